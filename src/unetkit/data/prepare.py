"""Data set on disk -> validated cache, mask spec, splits and channel statistics for training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetkit.data.cache import ArrayCache, BadSample, build_cache
from unetkit.data.formats import DatasetSpec, MaskSpec, open_dataset
from unetkit.data.loading import read_sample_raw_mask
from unetkit.data.masks import describe_values, infer_mask_spec, values_outside
from unetkit.data.transforms import IGNORE
from unetkit.errors import UnetkitError

MASK_SAMPLE = 16
CLASSES_FILE = "classes.txt"
# a classes.txt line (any case) declaring that mask value 255 means "not annotated"
UNLABELED_NAMES = ("unlabeled", "unlabelled", "ignore")


@dataclass
class PreparedData:
    spec: DatasetSpec
    mask: MaskSpec
    cache: ArrayCache
    bad: list[BadSample]

    def index_of(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.cache.names)}


def resolve_mask_spec(spec: DatasetSpec) -> MaskSpec:
    """Decide how masks encode classes when the format leaves it to the data ('auto')."""
    if spec.mask.kind != "auto":
        return spec.mask
    with_masks = [s for s in spec.samples if s.mask is not None]
    if not with_masks:
        raise UnetkitError(f"No masks found for the images in {spec.root} (looked for files "
                           "with the same stems in masks/).")
    step = max(1, len(with_masks) // MASK_SAMPLE)
    raws, names = [], []
    for s in with_masks[::step][:MASK_SAMPLE]:
        try:
            raws.append(read_sample_raw_mask(s))
            names.append(str(s.mask))
        except UnetkitError:
            continue  # reported by the validation pass with its file name
    if not raws:
        raise UnetkitError(f"None of the masks in {spec.root} could be read.")
    return apply_class_names(infer_mask_spec(raws, names), spec.root,
                             list(zip(names, raws, strict=True)))


def apply_class_names(mask: MaskSpec, root: Path,
                      sampled: list[tuple[str, np.ndarray]] | None = None) -> MaskSpec:
    """Name the classes from root/classes.txt (one name per line, class 0 first) if present.

    `sampled` (mask file, raw mask) pairs let a value beyond the listed classes be reported
    with the mask that holds it.
    """
    path = Path(root) / CLASSES_FILE
    if not path.is_file():
        return mask
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if any(n.lower() in UNLABELED_NAMES for n in names):
        return unlabeled_spec(mask, [n for n in names if n.lower() not in UNLABELED_NAMES],
                              path, sampled)
    if mask.kind in ("binary", "instance") and len(names) != 2:
        raise UnetkitError(f"{path} lists {len(names)} classes but the masks are binary "
                           "(expected 2 names: background and foreground).")
    if mask.kind == "index" and len(names) < mask.num_classes:
        for name, raw in sampled or []:
            if bad := values_outside(raw, len(names)):
                raise UnetkitError(f"{name} has {describe_values(bad)} but {path} lists "
                                   f"{len(names)} classes (values 0..{len(names) - 1}).")
        raise UnetkitError(f"{path} lists {len(names)} classes but the masks hold values up "
                           f"to {mask.num_classes - 1}.")
    mask.class_names = names
    return mask


def unlabeled_spec(detected: MaskSpec, names: list[str], path: Path,
                   sampled: list[tuple[str, np.ndarray]] | None = None) -> MaskSpec:
    """Class-index masks whose 255 means "not annotated", as `path` declares (partial labels).

    The declaration wins over detection: masks holding only 0, 1 and 255 would otherwise be
    read as binary, with 255 as foreground.
    """
    if detected.kind == "palette":
        raise UnetkitError(f"{path} declares unlabeled pixels (mask value {IGNORE}), which "
                           "needs single-channel class-index masks, but the masks are colour "
                           "images.")
    if len(names) < 2:
        raise UnetkitError(f"{path} names {len(names)} class(es) besides the unlabeled line; "
                           "list at least 2 (class 0 first).")
    for name, raw in sampled or []:
        if bad := values_outside(raw, len(names), IGNORE):
            raise UnetkitError(f"{name} has {describe_values(bad)} but {path} lists "
                               f"{len(names)} classes (values 0..{len(names) - 1}, and "
                               f"{IGNORE} = unlabeled).")
    return MaskSpec(kind="index", class_names=names, ignore_index=IGNORE)


def declares_unlabeled(root: str | Path) -> bool:
    """Whether root/classes.txt has the `unlabeled` line (mask value 255 = not annotated)."""
    path = Path(root) / CLASSES_FILE
    return path.is_file() and any(line.strip().lower() in UNLABELED_NAMES
                                  for line in path.read_text().splitlines())


def prepare(data: str | Path, format: str = "auto", scale: float | str = 1.0,
            skip_bad: bool = False, mask: MaskSpec | None = None,
            **format_options: object) -> PreparedData:
    """Open, validate and cache a data set; bad pairs stop here unless `skip_bad`."""
    spec = open_dataset(data, format, **format_options)
    mask_spec = mask or resolve_mask_spec(spec)
    cache = build_cache(spec.samples, mask_spec, scale)
    if cache.bad and not skip_bad:
        first = cache.bad[0]
        more = f" ({len(cache.bad) - 1} more problem(s); --skip-bad leaves them out)" \
            if len(cache.bad) > 1 else " (--skip-bad leaves it out)"
        raise UnetkitError(f"{first.reason.rstrip('.')}{more}.")
    return PreparedData(spec, mask_spec, cache, cache.bad)


def foreground_strata(cache: ArrayCache) -> list[int]:
    """1 for images whose mask has any foreground, else 0 (for stratified splits)."""
    return [int(np.any((np.asarray(cache.mask(i)) > 0) & (np.asarray(cache.mask(i)) != 255)))
            for i in range(len(cache))]


def peek_sizes(spec: DatasetSpec, limit: int = 32) -> list[tuple[int, int]]:
    """(H, W) of a spread of images, from headers only (no full decode)."""
    from PIL import Image

    samples = spec.samples
    step = max(1, len(samples) // limit)
    sizes = []
    for s in samples[::step][:limit]:
        if s.region is not None:
            top, left, bottom, right = s.region
            sizes.append((bottom - top, right - left))
            continue
        try:
            if s.image.suffix.lower() in (".tif", ".tiff"):
                import tifffile

                with tifffile.TiffFile(s.image) as tif:
                    shape = tif.pages[s.image_page or 0].shape
                    sizes.append((int(shape[0]), int(shape[1])) if len(shape) == 2 or
                                 shape[-1] <= 4 else (int(shape[1]), int(shape[2])))
            else:
                with Image.open(s.image) as im:
                    sizes.append((im.height, im.width))
        except Exception:  # noqa: BLE001 — unreadable files are reported by the validation pass
            continue
    if not sizes:
        raise UnetkitError(f"None of the images in {spec.root} could be read "
                           f"(first: {samples[0].image}).")
    return sizes
