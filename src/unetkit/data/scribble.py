"""Partial labels from full ones: scribble-like strokes along the skeleton of every class region.

Drawing full masks is the expensive part of segmentation; `unetkit scribble` makes the sparse
version of a fully labelled set, so one can measure what training from a few strokes per class
costs in quality. The strokes imitate what an annotator draws quickly: lines along the middle
of each region (scikit-image's skeletonize), `width` pixels wide, never crossing into another
class, so every stroke pixel carries its true class. Everything else becomes 255, the
"unlabeled" value (the data root's classes.txt declares it; see DESIGN.md, Masks on disk).

One mask (`scribble_mask`): each class region's skeleton is cut at its junctions and on a
randomly offset grid of `segment`-pixel cells into pieces; each piece is dilated to the stroke
width inside its own region. Pieces are kept in random order until `fraction` of the image's
pixels is annotated, one piece of every class present first, each class taking its share of
the target in proportion to its area (thin classes have long skeletons for their area; taken
uniformly, their strokes would outnumber the others' and teach the model a wrong class
prior); a class's last piece is kept only when that lands nearer its share. Should the
skeletons run out first, the strokes are widened ring by ring inside their regions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from unetkit.data.formats import Sample, open_dataset
from unetkit.data.loading import read_mask, read_sample_image
from unetkit.data.prepare import CLASSES_FILE, resolve_mask_spec
from unetkit.data.transforms import IGNORE
from unetkit.errors import UnetkitError, UsageError
from unetkit.io_utils import atomic_path, atomic_write_text, ensure_dir
from unetkit.progress import progress

STROKE_WIDTH = 3  # px
SEGMENT = 32  # px: grid cell that cuts skeleton branches into stroke pieces
REPORT = "scribble.json"
_EIGHT = np.ones((3, 3), dtype=bool)


def check_options(fraction: float, width: int = STROKE_WIDTH) -> float:
    """The share of pixels to annotate, strictly between 0 and 1, and a stroke width of at
    least 1 px (UsageError naming the flag otherwise)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0 < fraction < 1:
        raise UsageError(f"--fraction {fraction!r} must be a share of the pixels between 0 and "
                         "1 (exclusive), e.g. 0.05.")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise UsageError(f"--width {width!r} must be a whole number of pixels, at least 1.")
    return float(fraction)


def _skeleton_pieces(region: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """The skeleton pixels of `region` labelled 1..n by piece (0 elsewhere): branches between
    junctions, cut further by the grid `cells`; every connected part keeps a piece."""
    from skimage.morphology import skeletonize

    skeleton = skeletonize(region)
    neighbours = ndimage.convolve(skeleton.astype(np.uint8), _EIGHT.astype(np.uint8),
                                  mode="constant") - 1
    branches = skeleton & (neighbours <= 2)
    parts, _ = ndimage.label(skeleton, structure=_EIGHT)
    orphans = skeleton & ~np.isin(parts, np.unique(parts[branches]))  # all-junction parts
    branches |= orphans
    branch_id, _ = ndimage.label(branches, structure=_EIGHT)
    key = branch_id[branches].astype(np.int64) * (int(cells.max()) + 1) + cells[branches]
    pieces = np.zeros(region.shape, dtype=np.int32)
    pieces[branches] = np.unique(key, return_inverse=True)[1] + 1
    return pieces


def stroke_pieces(mask: np.ndarray, rng: np.random.Generator, width: int = STROKE_WIDTH,
                  segment: int = SEGMENT) -> tuple[np.ndarray, np.ndarray]:
    """(labels, piece_class): candidate strokes as an int32 label image (0 = none, pieces
    1..n, each `width` px wide and inside one class region) and the class of each piece."""
    h, w = mask.shape
    oy, ox = (int(v) for v in rng.integers(0, segment, 2))
    yy, xx = np.indices(mask.shape)
    cells = ((yy + oy) // segment) * (w // segment + 2) + (xx + ox) // segment
    footprint = np.ones((width, width), dtype=bool)
    labels = np.zeros((h, w), dtype=np.int32)
    piece_class: list[int] = []
    for c in (int(v) for v in np.unique(mask) if v != IGNORE):
        region = mask == c
        pieces = _skeleton_pieces(region, cells)
        n = int(pieces.max())
        grown = ndimage.grey_dilation(pieces, footprint=footprint) if width > 1 else pieces
        inside = region & (grown > 0)
        labels[inside] = grown[inside] + len(piece_class)
        piece_class += [c] * n
    return labels, np.asarray(piece_class, dtype=np.int64)


def _choose(sizes: np.ndarray, piece_class: np.ndarray, target: int,
            rng: np.random.Generator, areas: dict[int, int] | None = None) -> list[int]:
    """Piece indices: one per class first, then random pieces of each class until its share
    of `target` pixels (its share of the image's `areas`, so the strokes keep the classes'
    proportions: an annotator covers large regions more), keeping a class's last piece only
    when that lands nearer its share."""
    order = rng.permutation(len(sizes))
    classes = [int(c) for c in np.unique(piece_class)]
    first = [int(order[(piece_class[order] == c) & (sizes[order] > 0)][0]) for c in classes]
    areas = areas or {c: int(sizes[piece_class == c].sum()) for c in classes}
    whole = max(sum(areas.get(c, 0) for c in classes), 1)
    chosen = list(first)
    for c, p0 in zip(classes, first, strict=True):
        share = target * areas.get(c, 0) / whole
        total = int(sizes[p0])
        for p in (int(p) for p in order[piece_class[order] == c]):
            if total >= share:
                break
            need = share - total
            if p != p0 and sizes[p] > 0 and (sizes[p] <= need or sizes[p] < 2 * need):
                chosen.append(p)
                total += int(sizes[p])
    return chosen


def _widen(annotated: np.ndarray, mask: np.ndarray, need: int, rng: np.random.Generator
           ) -> None:
    """Grow the strokes ring by ring inside their own class regions until `need` more pixels
    are annotated (the last ring in part, at random), or nothing is left to grow into."""
    regions = [mask == c for c in np.unique(mask[annotated])]
    while need > 0:
        ring = np.zeros_like(annotated)
        for region in regions:
            ring |= ndimage.binary_dilation(annotated & region, _EIGHT) & region
        ring &= ~annotated
        where = np.flatnonzero(ring)
        if where.size == 0:
            return
        if where.size > need:
            where = rng.choice(where, need, replace=False)
        annotated.flat[where] = True
        need -= where.size


def scribble_mask(mask: np.ndarray, fraction: float, rng: np.random.Generator,
                  width: int = STROKE_WIDTH, segment: int = SEGMENT) -> np.ndarray:
    """A partial copy of the HxW class-index `mask`: strokes keep their class, the rest is 255.

    About `fraction` of all pixels are annotated (see the module docstring); pixels that are
    already 255 stay unlabeled.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be H x W class indices, got shape {mask.shape}")
    check_options(fraction, width)
    if segment < 2:
        raise ValueError(f"segment must be at least 2 pixels, got {segment}")
    out = np.full(mask.shape, IGNORE, dtype=np.uint8)
    labels, piece_class = stroke_pieces(mask, rng, width, segment)
    if len(piece_class) == 0:
        return out
    target = int(round(fraction * mask.size))
    sizes = np.bincount(labels.ravel(), minlength=len(piece_class) + 1)[1:]
    values, counts = np.unique(mask[mask != IGNORE], return_counts=True)
    areas = {int(v): int(n) for v, n in zip(values, counts, strict=True)}
    chosen = np.asarray(_choose(sizes, piece_class, target, rng, areas), dtype=np.int64) + 1
    annotated = np.isin(labels, chosen)
    if int(annotated.sum()) < target:
        _widen(annotated, mask, target - int(annotated.sum()), rng)
    out[annotated] = mask[annotated]
    return out


# ------------------------------------------------------------------ a whole data set


@dataclass
class ScribbleResult:
    """What `scribble_dataset` wrote: the achieved share of annotated pixels per image."""

    out: Path
    requested: float
    class_names: list[str]
    per_image: dict[str, float] = field(default_factory=dict)
    annotated: int = 0  # pixels, all images
    pixels: int = 0
    without_mask: int = 0  # images of the source left out (nothing to scribble)

    @property
    def overall(self) -> float:
        return self.annotated / max(self.pixels, 1)

    def to_dict(self) -> dict[str, object]:
        return {"requested_fraction": self.requested, "overall_fraction": round(self.overall, 6),
                "class_names": self.class_names, "images": len(self.per_image),
                "without_mask": self.without_mask,
                "per_image": {k: round(v, 6) for k, v in self.per_image.items()}}

    def summary(self) -> str:
        lines = [f"{name}\t{share:.2%} annotated" for name, share in self.per_image.items()]
        off = abs(self.overall / self.requested - 1)
        lines.append(f"Wrote {len(self.per_image)} sparse masks to {self.out}: {self.overall:.2%}"
                     f" of pixels annotated overall (asked {self.requested:.2%}"
                     + (f"; {off:.0%} off, as one stroke per class is always kept"
                        if off > 0.2 else "") + ").")
        if self.without_mask:
            lines.append(f"{self.without_mask} image(s) without a mask were left out.")
        lines.append(f"Train on it as it is: unetkit fit --data {self.out}")
        return "\n".join(lines)


def check_out(data: Path, out: Path) -> None:
    """--out must be a new (or empty) folder outside the data set, which would otherwise
    read the sparse copy as part of itself."""
    data_dir, target = data.resolve(), out.resolve()
    if target == data_dir or data_dir in target.parents:
        raise UsageError(f"--out {out} is inside the data folder {data}; write the sparse set "
                         "somewhere else.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} already exists and is not an empty folder; choose a new "
                         "one.")


def output_stems(samples: list[Sample]) -> list[str]:
    """File stems for the copies: the sample's own name (its last part), made file-safe and
    unique within its split (folder pairing ignores case)."""
    stems, seen = [], set()
    for s in samples:
        base = re.sub(r"[^\w.-]", "_", s.name.rsplit("/", 1)[-1]) or "image"
        stem, n = base, 1
        while (s.split, stem.lower()) in seen:
            n += 1
            stem = f"{base}_{n}"
        seen.add((s.split, stem.lower()))
        stems.append(stem)
    return stems


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")


def place_image(sample: Sample, folder: Path, stem: str) -> None:
    """The sample's image in `folder`: a hard link (else a copy) of a file read as it is, or
    the decoded image as PNG (a page, crop or channel stack of the source)."""
    if sample.image_page is None and sample.region is None and sample.channels is None \
            and not sample.drop_alpha:
        target = folder / f"{stem}{sample.image.suffix}"
        try:
            os.link(sample.image, target)
        except OSError:  # another file system, or no hard links there
            with atomic_path(target) as tmp:
                shutil.copyfile(sample.image, tmp)
        return
    image = read_sample_image(sample)
    if image.shape[-1] in (1, 3, 4):
        _write_png(folder / f"{stem}.png", image[..., 0] if image.shape[-1] == 1 else image)
        return
    import tifffile

    with atomic_path(folder / f"{stem}.tif") as tmp:
        tifffile.imwrite(tmp, image)


def scribble_dataset(data: str | Path, out: str | Path, fraction: float, seed: int = 0,
                     width: int = STROKE_WIDTH, format: str = "auto", quiet: bool = False,
                     **format_options: object) -> ScribbleResult:
    """Write the sparse version of a labelled data set to `out` in the `folder` layout.

    out/images (hard links or copies), out/masks/*.png (strokes keep their class, the rest
    255), out/classes.txt (the class names and `unlabeled`) and out/scribble.json (the
    achieved shares); official train/val/test splits are kept as out/<split>/. Image i's
    strokes depend only on (seed, i).
    """
    fraction = check_options(fraction, width)
    data, out = Path(data), Path(out)
    spec = open_dataset(data, format, **format_options)
    check_out(data, out)
    mask_spec = resolve_mask_spec(spec)
    labelled = [s for s in spec.samples if s.mask is not None or s.mask_rle is not None
                or s.mask_parts is not None]
    if not labelled:
        raise UnetkitError(f"No image in {spec.root} has a mask, so there is nothing to "
                           "scribble.")
    keep_splits = spec.official_splits and all(s.split for s in labelled)
    result = ScribbleResult(out, fraction, list(mask_spec.class_names),
                            without_mask=len(spec.samples) - len(labelled))
    pairs = list(zip(labelled, output_stems(labelled), strict=True))
    for i, (sample, stem) in enumerate(progress(pairs, total=len(pairs), desc="Scribbling",
                                                disable=quiet)):
        base = out / sample.split if keep_splits and sample.split else out
        mask = read_mask(sample, mask_spec)
        sparse = scribble_mask(mask, fraction, np.random.default_rng([seed, i]), width)
        place_image(sample, ensure_dir(base / "images"), stem)
        _write_png(ensure_dir(base / "masks") / f"{stem}.png", sparse)
        done = int((sparse != IGNORE).sum())
        result.per_image[sample.name] = done / sparse.size
        result.annotated += done
        result.pixels += sparse.size
    atomic_write_text(out / CLASSES_FILE, "\n".join([*mask_spec.class_names, "unlabeled"])
                      + "\n")
    atomic_write_text(out / REPORT, json.dumps({"source": str(data), "seed": seed,
                                                "stroke_width": width, **result.to_dict()},
                                               indent=1) + "\n")
    return result
