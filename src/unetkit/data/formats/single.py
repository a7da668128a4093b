"""`single`: one large annotated image (image.tif + labels.tif), used as a grid of crops.

Microscopy data often comes as one field of view with one label image (e.g. a nuclei image
and its instance labels). Training and validation need several samples, so the pair is cut
into a grid x grid set of disjoint crops, each a sample (nothing is written to disk). Crops
of one image are not independent (same specimen and acquisition), so validation scores on
them are somewhat optimistic.

Detected when the folder holds exactly one image file and one mask file whose stem is a mask
name (labels, label, mask, masks, gt, or the image stem plus _mask/_labels...).
Option: grid=N (default: crops of about 128 px, 2 to 8 per side).
"""

from __future__ import annotations

from pathlib import Path

from unetkit.data.formats.base import DatasetSpec, MaskSpec, Sample
from unetkit.data.formats.folder import MASK_SUFFIXES, list_images
from unetkit.errors import UnetkitError, UsageError

NAME = "single"
DESCRIPTION = ("one image and one mask file in the folder (e.g. image.tif + labels.tif), cut "
               "into a grid of crops; option grid=N")
MASK_STEMS = ("labels", "label", "mask", "masks", "gt", "annotation", "annotations")
CROP_SIDE = 128  # default crop side: enough crops for a validation split, context kept
MIN_CROP = 16


def _is_mask(path: Path, image_stem: str | None = None) -> bool:
    stem = path.stem.lower()
    if stem in MASK_STEMS:
        return True
    return image_stem is not None and any(
        stem == image_stem.lower() + suffix for suffix in MASK_SUFFIXES if suffix)


def _pair(root: Path) -> tuple[Path, Path] | None:
    files = list_images(root)
    if len(files) != 2:
        return None
    for image, mask in (files, files[::-1]):
        if _is_mask(mask, image.stem) and not _is_mask(image):
            return image, mask
    return None


def detect(root: Path) -> bool:
    return _pair(root) is not None


def _image_size(path: Path) -> tuple[int, int]:
    from unetkit.data.readers import read_array

    shape = read_array(path).shape
    return int(shape[0]), int(shape[1])


def load(root: Path, grid: str | int | None = None, **options: object) -> DatasetSpec:
    if options:
        raise UsageError(f"Format single takes only the option grid=N, not "
                         f"{', '.join(options)}.")
    pair = _pair(root)
    if pair is None:
        raise UnetkitError(f"{root} should hold exactly one image and one mask file (such as "
                           "image.tif and labels.tif) for the single format.")
    image, mask = pair
    h, w = _image_size(image)
    mh, mw = _image_size(mask)
    if (mh, mw) != (h, w):
        from unetkit.data.readers import orientation_hint

        hint = orientation_hint(image, (h, w), mask, (mh, mw))
        raise UnetkitError(f"{mask} is {mw}x{mh} but {image} is {w}x{h} "
                           f"(mask size mismatch{hint}).")
    if grid is None:
        n = max(2, min(8, min(h, w) // CROP_SIDE))
    else:
        try:
            n = int(grid)
        except ValueError:
            raise UsageError(f"Option grid={grid!r} of format single must be a whole number."
                             ) from None
        if n < 1:
            raise UsageError(f"Option grid={n} of format single must be at least 1.")
    ch, cw = h // n, w // n
    if ch < MIN_CROP or cw < MIN_CROP:
        raise UsageError(f"A {n}x{n} grid would cut {image} ({w}x{h} px) into {cw}x{ch} px "
                         f"crops; use a grid of at most {max(1, min(h, w) // MIN_CROP)}.")
    samples = [Sample(name=f"{image.stem}_r{r}c{c}", image=image, mask=mask,
                      region=(r * ch, c * cw, (r + 1) * ch, (c + 1) * cw))
               for r in range(n) for c in range(n)]
    return DatasetSpec(root=root, format=NAME, samples=samples, mask=MaskSpec(kind="auto"))
