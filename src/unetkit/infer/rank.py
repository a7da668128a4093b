"""Which unlabelled images to annotate next: the most uncertain, near-duplicates held back.

Each image's value is its uncertainty (mean normalised entropy, plus the mean mutual
information when the predictor has members that can disagree). Images are chosen greedily:
a candidate's score is its uncertainty discounted by its largest cosine similarity to the
images already chosen, so ten frames of one scene do not fill the list. Similarity is that of
a 16x16 greyscale thumbnail with its mean removed (the correlation of two thumbnails), which
is cheap, needs no model internals and ignores brightness and contrast.
`rank_images` is what `unetkit rank` and the studio's "suggest next" call.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from unetkit.data.formats import FORMATS, Sample, open_dataset
from unetkit.data.formats.folder import list_images, no_images_message
from unetkit.data.loading import read_sample_image
from unetkit.data.overlay import to_rgb
from unetkit.errors import UnetkitError, UsageError
from unetkit.infer.evaluate import write_per_image
from unetkit.infer.predict import Predictor
from unetkit.infer.uncertainty import UncertaintyMaps
from unetkit.progress import progress

THUMBNAIL = 16  # side of the embedding's thumbnail
PREVIEW = 96  # longest side of the pictures kept for the contact sheet
DIVERSITY = 1.0  # 1: a duplicate of a chosen image scores 0; 0: uncertainty alone
SIMILAR = 0.9  # similarity above which the reason names the chosen image it resembles
SHEET_COLUMNS = 4  # image + map pairs per row of rank.png


@dataclass
class RankedImage:
    """One suggestion: where it is, why, and small pictures for a contact sheet."""

    rank: int
    image: str
    score: float  # uncertainty after the diversity discount
    uncertainty: float
    similarity_to_chosen: float | None  # largest cosine similarity to those ranked above
    reason: str
    mean_entropy: float
    mean_mutual_info: float | None
    source: str  # where the members came from (see UncertaintyMaps)
    preview: np.ndarray  # uint8 RGB, longest side <= PREVIEW
    preview_map: np.ndarray  # float32 normalised entropy at the preview's size

    def row(self) -> dict[str, Any]:
        return {"rank": self.rank, "image": self.image, "score": self.score,
                "uncertainty": self.uncertainty,
                "similarity_to_chosen": self.similarity_to_chosen, "reason": self.reason}


def embedding(image: np.ndarray) -> np.ndarray:
    """A unit vector from a THUMBNAIL² greyscale thumbnail with its mean removed (zeros for
    a flat image): the dot product of two is the correlation of their thumbnails."""
    grey = to_rgb(image).astype(np.float32).mean(-1)
    small = np.asarray(Image.fromarray(grey).resize((THUMBNAIL, THUMBNAIL),
                                                               Image.BOX), dtype=np.float64)
    v = (small - small.mean()).ravel()
    norm = np.linalg.norm(v)
    return v / norm if norm > 1e-9 * max(1.0, float(np.abs(small).max())) else np.zeros_like(v)


def greedy_select(uncertainty: np.ndarray, embeddings: np.ndarray, top: int,
                  diversity: float = DIVERSITY) -> list[tuple[int, float, float | None, int]]:
    """(index, score, similarity to chosen, most similar chosen index or -1), best first.

    score = uncertainty × (1 - diversity × max(0, largest similarity to those chosen)).
    """
    n = len(uncertainty)
    best_sim = np.full(n, -np.inf)
    nearest = np.full(n, -1)
    free = np.ones(n, dtype=bool)
    picked: list[tuple[int, float, float | None, int]] = []
    for _ in range(min(top, n)):
        discount = 1 - diversity * np.clip(best_sim, 0, None) if picked else np.ones(n)
        score = np.where(free, uncertainty * discount, -np.inf)
        i = int(np.argmax(score))
        picked.append((i, float(score[i]), float(best_sim[i]) if picked else None,
                       int(nearest[i])))
        free[i] = False
        sim = embeddings @ embeddings[i]
        closer = sim > best_sim
        best_sim = np.where(closer, sim, best_sim)
        nearest = np.where(closer, i, nearest)
    return picked


def _preview(image: np.ndarray, entropy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = entropy.shape
    f = min(1.0, PREVIEW / max(h, w))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    small = np.asarray(Image.fromarray(to_rgb(image)).resize(size, Image.BILINEAR))
    emap = Image.fromarray(entropy.astype(np.float32)).resize(size, Image.BILINEAR)
    return small, np.asarray(emap, dtype=np.float32)


@dataclass
class _Measured:
    """What ranking keeps of an image: numbers and previews, not its full-size maps."""

    name: str
    maps: UncertaintyMaps  # the summaries; its maps are replaced by empty arrays
    embedding: np.ndarray
    preview: np.ndarray
    preview_map: np.ndarray

    @classmethod
    def of(cls, name: str, image: np.ndarray, maps: UncertaintyMaps) -> _Measured:
        small, small_map = _preview(image, maps.entropy)
        empty = np.zeros((0, 0), dtype=np.float16)
        return cls(name, replace(maps, entropy=empty, mutual_info=None), embedding(image),
                   small, small_map)

    def reason(self, sim: float | None, like: str | None) -> str:
        m = self.maps
        text = f"entropy {m.mean_entropy:.3f}"
        if m.mean_mutual_info is not None:
            text += f" + disagreement {m.mean_mutual_info:.3f}"
        text += (f" ({m.source}, {m.members} member{'s' * (m.members != 1)}); "
                 f"{m.uncertain_fraction:.0%} of pixels uncertain")
        if sim is not None and sim >= SIMILAR and like is not None:
            text += f"; resembles {like} (similarity {sim:.2f}), ranked above"
        return text


def check_options(top: int, diversity: float) -> None:
    """UsageError unless top >= 1 and 0 <= diversity <= 1."""
    if top < 1:
        raise UsageError(f"--top {top} must be at least 1.")
    if not 0 <= diversity <= 1:
        raise UsageError(f"--diversity {diversity} must be between 0 and 1.")


def rank_images(predictor: Predictor, paths: Sequence[str | Path | Sample], top: int = 10,
                diversity: float = DIVERSITY, quiet: bool = False) -> list[RankedImage]:
    """The `top` images worth annotating first, best first.

    `predictor` needs only `probabilities_with_uncertainty` (tests pass a stand-in);
    `paths` are image files or data-layer Samples (see `unlabelled_images`).
    An unreadable image is reported on stderr and left out.
    """
    check_options(top, diversity)
    if not paths:
        raise UnetkitError("There are no images to rank.")
    measured: list[_Measured] = []
    for item in progress(paths, total=len(paths), desc="Ranking", disable=quiet or
                         len(paths) < 2):
        sample = item if isinstance(item, Sample) else Sample(Path(item).stem, Path(item))
        try:
            image = read_sample_image(sample)
            _, maps = predictor.probabilities_with_uncertainty(image, name=str(sample.image))
        except UnetkitError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            continue
        measured.append(_Measured.of(str(sample.image), image, maps))
    if not measured:
        raise UnetkitError(f"None of the {len(paths)} images could be read.")
    scores = np.array([m.maps.score for m in measured])
    chosen = greedy_select(scores, np.stack([m.embedding for m in measured]), top, diversity)
    ranked = []
    for r, (i, score, sim, j) in enumerate(chosen, 1):
        m = measured[i]
        ranked.append(RankedImage(r, m.name, score, float(scores[i]), sim,
                                  m.reason(sim, measured[j].name if j >= 0 else None),
                                  m.maps.mean_entropy, m.maps.mean_mutual_info, m.maps.source,
                                  m.preview, m.preview_map))
    return ranked


def unlabelled_images(folder: str | Path) -> list[Sample]:
    """FOLDER's images to rank: all of a plain folder of images, or those of a data set
    (any layout the data layer detects) that have no mask yet."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UnetkitError(no_images_message(folder) if not folder.exists() else
                           f"{folder} is a file; rank takes a folder of images.")
    if any(module.detect(folder) for module in FORMATS.values()):
        spec = open_dataset(folder)
        free = [s for s in spec.samples
                if s.mask is None and s.mask_rle is None and s.mask_parts is None]
        if not free:
            raise UnetkitError(f"All {len(spec.samples)} images in {folder} already have "
                               f"masks ({spec.format} layout); there is nothing to rank.")
        return free
    images = list_images(folder)
    if not images:
        raise UnetkitError(no_images_message(folder))
    return [Sample(p.stem, p) for p in images]


def write_rank_csv(ranked: list[RankedImage], path: Path) -> None:
    write_per_image([r.row() for r in ranked], path)


def contact_sheet(ranked: list[RankedImage], path: Path) -> None:
    """rank.png: each suggestion's thumbnail with its uncertainty map beside it, rank and
    name above, score below (maps on the fixed 0..1 scale)."""
    from unetkit.infer.uncertainty_files import COLOUR_MAP
    from unetkit.plotting import plt, save_figure

    cols = min(len(ranked), SHEET_COLUMNS)
    rows = -(-len(ranked) // cols)
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(3.2 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for k, r in enumerate(ranked):
        left, right = axes[k // cols, 2 * (k % cols)], axes[k // cols, 2 * (k % cols) + 1]
        left.imshow(r.preview)
        right.imshow(r.preview_map, cmap=COLOUR_MAP, vmin=0, vmax=1)
        left.set_title(f"#{r.rank} {Path(r.image).name}", fontsize=8, loc="left")
        left.text(0, -0.06, f"score {r.score:.3f}", transform=left.transAxes, fontsize=8,
                  va="top")
    fig.tight_layout()
    save_figure(fig, path)


def format_table(ranked: list[RankedImage]) -> str:
    """The suggestions as an aligned text table (what `unetkit rank` prints)."""
    width = max(len("image"), *(len(r.image) for r in ranked))
    lines = [f"{'rank':>4}  {'image':<{width}}  {'score':>6}  {'uncert.':>7}  {'sim.':>5}  "
             "reason"]
    for r in ranked:
        sim = "" if r.similarity_to_chosen is None else f"{r.similarity_to_chosen:.2f}"
        lines.append(f"{r.rank:>4}  {r.image:<{width}}  {r.score:>6.3f}  {r.uncertainty:>7.3f}"
                     f"  {sim:>5}  {r.reason}")
    return "\n".join(lines)
