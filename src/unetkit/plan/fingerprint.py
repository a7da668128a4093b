"""The data fingerprint: what a data set looks like, measured from the decoded-array cache.

Everything here is a deterministic function of the data (a fixed, evenly spaced subsample of
images for the geometry statistics), so the same folder always gives the same fingerprint and
the planner's decisions can be replayed from it.

Geometry per class (pooled over the sampled images):

* pixel / image frequency: share of labelled pixels, share of images where the class occurs;
* objects: 8-connected components (scipy.ndimage.label) - count per image, area, equivalent
  diameter;
* thickness: ``2 * area / boundary pixels`` (a stripe of width w gives w, a disc of radius r
  gives r) and the distance-transform width ``2 * p90 of the distance to the nearest other
  class`` (stripe: about 0.9 w, disc: about 1.4 r); the class width is the smaller of the two;
* elongation: area-weighted median over components of ``area / width**2`` (a line of length L
  and width w gives L/w, a disc about 0.8).

A class is *thin* (membranes, vessels, cracks) when it is narrow (width <= THIN_MAX_WIDTH px)
and elongated (elongation >= THIN_MIN_ELONGATION); thin structures must not be downscaled.

Images are *upright* (street scenes, rooms, pets; not microscopy) when their classes sit
differently in the top and bottom halves: the total-variation distance between the two halves'
class distributions is at least UPRIGHT_MIN_SHIFT and at least twice that between the left
and right halves (a scene's sky is on top, its left and right look alike).

Masks are *sparse* (partial labels, e.g. scribbles) when more than SPARSE_MIN_UNLABELED of the
pixels are unlabeled (the ignore value). Their labelled components are strokes, not objects,
so no geometry is measured for them (structure "unknown"): a 3 px stroke is no thin class.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from unetkit.data.prepare import PreparedData

GEOMETRY_IMAGES = 32  # images used for connected components and distance transforms
STATS_IMAGES = 256  # images used for pixel frequencies and intensities
INTENSITY_PIXELS = 65_536  # pixels per image (strided) for intensity statistics
THIN_MAX_WIDTH = 12.0  # px: a class narrower than this ...
THIN_MIN_ELONGATION = 10.0  # ... and this elongated is a thin structure
UPRIGHT_MIN_SHIFT = 0.15  # top/bottom class-distribution distance of upright images
SPARSE_MIN_UNLABELED = 0.5  # masks with a larger share of unlabeled pixels are partial labels
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class ClassStats:
    """Frequency and geometry of one class (index into the mask's class list)."""

    index: int
    name: str
    pixel_fraction: float
    image_fraction: float
    objects_per_image: float | None = None  # median over sampled images containing the class
    object_area: dict[str, float] | None = None  # p10 / median / p90, px
    object_diameter: dict[str, float] | None = None  # equivalent-circle diameter p10/median/p90
    thickness: float | None = None  # 2 * area / boundary pixels
    edt_width: float | None = None  # 2 * p90 distance-transform value inside the class
    elongation: float | None = None
    thin: bool = False


@dataclass
class Fingerprint:
    """Data set statistics the planner decides from (see the module docstring)."""

    data: str
    format: str
    mask_kind: str
    class_names: list[str]
    images: int
    height: dict[str, int]  # min / median / max
    width: dict[str, int]
    aspect: dict[str, float]  # width / height: min / median / max
    same_size: bool
    total_pixels: int  # sum of H x W over all images (original pixels)
    channels: int  # the channels the model gets (RGBA counts as 3)
    raw_channels: int
    bit_depth: int  # of the files on disk (the cache holds 8-bit)
    intensity: dict[str, list[float]]  # per channel, 0-255 cache scale: mean, std, p1, p50, p99
    classes: list[ClassStats]
    ignore_fraction: float
    structure: str  # thin | blobs | empty | unknown (sparse masks)
    thin_classes: list[str] = field(default_factory=list)
    geometry_images: int = 0
    cache_scale: float = 1.0  # the cache it was measured on (lengths are in original pixels)
    sparse: bool = False  # partial labels: most pixels unlabeled (see the module docstring)
    # class-distribution distance between the image halves: "vertical" (top/bottom) and
    # "horizontal" (left/right); see the module docstring
    layout_shift: dict[str, float] = field(default_factory=dict)
    # images per official split when the format has one (CamVid: train/val/test), else {}
    official_splits: dict[str, int] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def binary(self) -> bool:
        return self.num_classes == 2

    @property
    def annotated_fraction(self) -> float:
        """Share of the pixels that carry a class (the rest is ignored or unlabeled)."""
        return 1.0 - self.ignore_fraction

    @property
    def upright(self) -> bool:
        """Scenes with a top and a bottom (see the module docstring): no vertical flips."""
        v = self.layout_shift.get("vertical", 0.0)
        return v >= UPRIGHT_MIN_SHIFT and v >= 2 * self.layout_shift.get("horizontal", 0.0)

    def minority(self) -> ClassStats:
        """The least frequent class that occurs at all (the hardest one to learn)."""
        present = [c for c in self.classes if c.pixel_fraction > 0] or self.classes
        return min(present, key=lambda c: (c.pixel_fraction, c.index))

    def object_classes(self) -> list[ClassStats]:
        """Classes whose connected components are the objects (all but class 0 here)."""
        return [c for c in self.classes if c.index > 0 and c.object_area]

    def to_dict(self) -> dict[str, Any]:
        return plain_types(asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Fingerprint:
        values = dict(values)
        values["classes"] = [ClassStats(**c) for c in values.get("classes", [])]
        return cls(**values)


def plain_types(value: Any) -> Any:
    """Plain Python types (no numpy scalars) so YAML round-trips exactly."""
    if isinstance(value, dict):
        return {str(k): plain_types(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_types(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _spread(values: list[float] | np.ndarray, digits: int = 2) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"p10": round(float(np.percentile(a, 10)), digits),
            "median": round(float(np.median(a)), digits),
            "p90": round(float(np.percentile(a, 90)), digits)}


def _even(n: int, limit: int) -> list[int]:
    """`limit` indices spread evenly over range(n) (all of them when n <= limit)."""
    if n <= limit:
        return list(range(n))
    return sorted({int(round(i * (n - 1) / (limit - 1))) for i in range(limit)})


def _bit_depth(data: PreparedData, limit: int = 8) -> int:
    """Bits per sample of the image files on disk, from a few headers."""
    depths = []
    for s in data.spec.samples[:limit]:
        try:
            if s.image.suffix.lower() in (".tif", ".tiff"):
                import tifffile

                with tifffile.TiffFile(s.image) as tif:
                    depths.append(np.dtype(tif.pages[s.image_page or 0].dtype).itemsize * 8)
            else:
                from PIL import Image

                with Image.open(s.image) as im:
                    depths.append(16 if im.mode.startswith("I;16") else
                                  32 if im.mode in ("I", "F") else 1 if im.mode == "1" else 8)
        except Exception:  # noqa: BLE001 — unreadable files were reported when caching
            continue
    return max(depths) if depths else 8


def _class_geometry(masks: list[np.ndarray], c: int) -> dict[str, Any]:
    """Connected components and widths of class `c` over the sampled masks."""
    areas: list[np.ndarray] = []
    counts: list[int] = []
    total_area = boundary = 0
    inside: list[np.ndarray] = []
    for m in masks:
        region = m == c
        if not region.any():
            continue
        labels, n = ndimage.label(region, structure=_EIGHT)
        a = np.bincount(labels.ravel())[1:]
        areas.append(a)
        counts.append(n)
        total_area += int(region.sum())
        # the image border is not a boundary: pad outside as the class itself
        inner = ndimage.binary_erosion(region, border_value=1)
        boundary += int(region.sum() - inner.sum())
        # distance to the nearest other pixel; outside the image counts as the class
        dist = ndimage.distance_transform_edt(np.pad(region, 1, mode="edge"))[1:-1, 1:-1]
        inside.append(dist[region])
    if not areas:
        return {}
    all_areas = np.concatenate(areas).astype(np.float64)
    thickness = 2.0 * total_area / max(boundary, 1)
    edt_width = 2.0 * float(np.percentile(np.concatenate(inside), 90))
    width = max(min(thickness, edt_width), 1.0)
    # area-weighted median of each component's elongation (area / width^2)
    elong = all_areas / width**2
    order = np.argsort(elong)
    cum = np.cumsum(all_areas[order])
    elongation = float(elong[order][np.searchsorted(cum, cum[-1] / 2)])
    return {
        "objects_per_image": round(float(np.median(counts)), 2),
        "object_area": _spread(all_areas, 1),
        "object_diameter": _spread(np.sqrt(4 * all_areas / np.pi), 1),
        "thickness": round(thickness, 2),
        "edt_width": round(edt_width, 2),
        "elongation": round(elongation, 2),
        "thin": bool(width <= THIN_MAX_WIDTH and elongation >= THIN_MIN_ELONGATION),
    }


def _layout_shift(masks: list[np.ndarray], k: int) -> dict[str, float]:
    """Total-variation distance between the class distributions of the top and bottom (and
    left and right) halves of the masks, labelled pixels only."""
    halves = np.zeros((4, k), dtype=np.float64)  # top, bottom, left, right
    for m in masks:
        h, w = m.shape[:2]
        for row, part in enumerate((m[: h // 2], m[h - h // 2:], m[:, : w // 2],
                                    m[:, w - w // 2:])):
            halves[row] += np.bincount(part.ravel(), minlength=256)[:k]
    share = halves / np.maximum(halves.sum(1, keepdims=True), 1)
    return {"vertical": round(0.5 * float(np.abs(share[0] - share[1]).sum()), 4),
            "horizontal": round(0.5 * float(np.abs(share[2] - share[3]).sum()), 4)}


def _official_splits(data: PreparedData) -> dict[str, int]:
    """Images per split when every sample carries an official one with a train part, as
    `make_splits` then uses them."""
    splits = [s.split for s in data.spec.samples]
    if not splits or not all(splits) or "train" not in splits:
        return {}
    return {name: splits.count(name) for name in sorted(set(splits))}


def _rescale(stats: dict[str, Any], scale: float) -> dict[str, Any]:
    """Geometry measured on a cache at `scale` -> original-resolution pixels."""
    if scale == 1.0 or not stats:
        return stats
    out = dict(stats)
    out["object_area"] = {k: round(v / scale**2, 1) for k, v in stats["object_area"].items()}
    out["object_diameter"] = {k: round(v / scale, 1) for k, v in stats["object_diameter"].items()}
    out["thickness"] = round(stats["thickness"] / scale, 2)
    out["edt_width"] = round(stats["edt_width"] / scale, 2)
    return out


def compute_fingerprint(data: PreparedData, source: str | Path | None = None,
                        cache_scale: float = 1.0) -> Fingerprint:
    """Measure a prepared data set (see `unetkit.data.prepare.prepare`) whose cache was built
    at `cache_scale`; sizes and lengths are reported in original pixels."""
    cache = data.cache
    n = len(cache)
    shapes = [cache.shapes[i] for i in range(n)]
    hs = np.array([round(s[0] / cache_scale) for s in shapes])
    ws = np.array([round(s[1] / cache_scale) for s in shapes])
    raw_c = [s[2] for s in shapes]
    raw_channels = max(set(raw_c), key=raw_c.count)
    channels = 3 if raw_channels == 4 else raw_channels
    aspect = ws / hs
    names = list(data.mask.class_names)
    k = len(names)

    # pixel and image frequencies, intensities: up to STATS_IMAGES images, all pixels
    counts = np.zeros(256, dtype=np.int64)
    present = np.zeros(256, dtype=np.int64)
    sums = np.zeros(channels)
    sq = np.zeros(channels)
    samples: list[np.ndarray] = []
    stats_idx = _even(n, STATS_IMAGES)
    for i in stats_idx:
        m = np.asarray(cache.mask(i))
        b = np.bincount(m.ravel(), minlength=256)
        counts += b
        present += b > 0
        img = np.asarray(cache.image(i))[..., :channels].reshape(-1, channels)
        step = max(1, img.shape[0] // INTENSITY_PIXELS)
        px = img[::step].astype(np.float64)
        sums += px.sum(0)
        sq += (px**2).sum(0)
        samples.append(img[::step])
    labelled = counts[:k].sum()
    total = counts.sum()
    pix = np.concatenate(samples).astype(np.float64)
    mean = pix.mean(0)
    intensity = {"mean": [round(float(v), 2) for v in mean],
                 "std": [round(float(v), 2) for v in pix.std(0)],
                 "p1": [round(float(v), 1) for v in np.percentile(pix, 1, axis=0)],
                 "p50": [round(float(v), 1) for v in np.percentile(pix, 50, axis=0)],
                 "p99": [round(float(v), 1) for v in np.percentile(pix, 99, axis=0)]}

    unlabeled = float((total - labelled) / max(total, 1))
    sparse = unlabeled > SPARSE_MIN_UNLABELED
    geo_idx = [] if sparse else _even(n, GEOMETRY_IMAGES)  # strokes are not objects
    masks = [np.asarray(cache.mask(i)) for i in geo_idx]
    classes = []
    for c in range(k):
        stats = ClassStats(index=c, name=names[c],
                           pixel_fraction=round(float(counts[c] / max(labelled, 1)), 5),
                           image_fraction=round(float(present[c] / len(stats_idx)), 4))
        for key, value in _rescale(_class_geometry(masks, c), cache_scale).items():
            setattr(stats, key, value)
        classes.append(stats)
    thin = [c.name for c in classes if c.thin]
    has_objects = any(c.object_area for c in classes if c.index > 0)
    structure = "unknown" if sparse else "thin" if thin else "blobs" if has_objects else "empty"
    return Fingerprint(
        data=str(source if source is not None else data.spec.root), format=data.spec.format,
        mask_kind=data.mask.kind, class_names=names, images=n,
        height={"min": int(hs.min()), "median": int(np.median(hs)), "max": int(hs.max())},
        width={"min": int(ws.min()), "median": int(np.median(ws)), "max": int(ws.max())},
        aspect={"min": round(float(aspect.min()), 3), "median": round(float(np.median(aspect)), 3),
                "max": round(float(aspect.max()), 3)},
        same_size=len({(s[0], s[1]) for s in shapes}) == 1,
        total_pixels=int(np.sum(hs.astype(np.int64) * ws)), channels=channels,
        raw_channels=raw_channels, bit_depth=_bit_depth(data), intensity=intensity,
        classes=classes, ignore_fraction=round(unlabeled, 5),
        structure=structure, thin_classes=thin, geometry_images=len(geo_idx),
        cache_scale=float(cache_scale), sparse=sparse,
        layout_shift=_layout_shift([np.asarray(cache.mask(i)) for i in stats_idx], k),
        official_splits=_official_splits(data))


def describe(fp: Fingerprint) -> list[str]:
    """Readable lines for the plan summary."""
    h, w = fp.height, fp.width
    size = (f"{h['median']}x{w['median']} px" if fp.same_size else
            f"{h['min']}-{h['max']} x {w['min']}-{w['max']} px (median {h['median']}x"
            f"{w['median']})")
    lines = [f"{fp.images} image(s) of {size}, {fp.raw_channels} channel(s), "
             f"{fp.bit_depth}-bit on disk, aspect (w/h) {fp.aspect['min']}-{fp.aspect['max']}",
             "intensity (8-bit scale) mean " + ", ".join(f"{v:.0f}" for v in fp.intensity["mean"])
             + ", std " + ", ".join(f"{v:.0f}" for v in fp.intensity["std"]) + ", 1-99% "
             + ", ".join(f"{a:.0f}-{b:.0f}" for a, b in zip(fp.intensity["p1"],
                                                         fp.intensity["p99"], strict=True))
             + ("" if fp.cache_scale == 1.0 else f" (measured at scale {fp.cache_scale:g})"),
             f"{fp.mask_kind} masks, {fp.num_classes} classes"
             + (f", {fp.ignore_fraction:.1%} ignored pixels" if fp.ignore_fraction else "")]
    for c in fp.classes:
        text = (f"  class {c.index} {c.name}: {c.pixel_fraction:.1%} of pixels, in "
                f"{c.image_fraction:.0%} of images")
        if c.object_area:
            text += (f"; {c.objects_per_image:g} object(s)/image, diameter median "
                     f"{c.object_diameter['median']:g} px (p90 {c.object_diameter['p90']:g}), "
                     f"width {min(c.thickness, c.edt_width):.1f} px, elongation "
                     f"{c.elongation:.3g}" + (" -> THIN" if c.thin else ""))
        lines.append(text)
    if fp.layout_shift:
        lines.append(f"layout: class mix differs top/bottom by {fp.layout_shift['vertical']:.2f}"
                     f", left/right by {fp.layout_shift['horizontal']:.2f}"
                     + (" -> UPRIGHT scenes" if fp.upright else ""))
    if fp.sparse:
        lines.append(f"masks are partial: {100 * fp.annotated_fraction:.2g}% of pixels "
                     "annotated; unlabeled pixels are left out of loss and metrics")
    lines.append("structure: " + (f"thin ({', '.join(fp.thin_classes)})" if fp.thin_classes
                                  else "not measured (the labels of partial masks are "
                                  "strokes, not objects)" if fp.sparse else fp.structure))
    return lines


__all__ = ["ClassStats", "Fingerprint", "compute_fingerprint", "describe"]
