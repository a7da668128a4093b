"""`dsb`: the 2018 Data Science Bowl nuclei layout, one folder per image.

    <root>/<ID>/images/<ID>.png     the image (RGBA PNGs are read as RGB)
    <root>/<ID>/masks/*.png         one binary mask per object (nucleus)

The object files of an image are composed into one 16-bit instance label image: label k for
the k-th file sorted by name. Objects should not overlap; where they do, the later file wins
(so each pixel has one label). Training uses the binary foreground (label > 0), and the
labels themselves feed `evaluate --instances`. Every <ID> folder needs masks/ (predict
reads unlabelled test images from any folder of images instead).

Detected when most sub-folders hold images/<their own name>.<ext>; that the image is named
after its folder keeps this layout from claiming folder's train/ val/ test/ splits.
"""

from __future__ import annotations

from pathlib import Path

from unetkit.data.formats.base import IMAGE_EXTENSIONS, DatasetSpec, MaskSpec, Sample
from unetkit.data.formats.folder import list_images
from unetkit.errors import UnetkitError, UsageError

NAME = "dsb"
DESCRIPTION = ("Data Science Bowl 2018: ID/images/ID.png and ID/masks/*.png, one binary mask "
               "per object, composed into 16-bit instance labels (binary foreground for "
               "training)")
_PEEK = 8  # sub-folders looked at when detecting


def _image_of(case: Path) -> Path | None:
    """case/images/<case name>.<ext>, if present."""
    images = case / "images"
    if not images.is_dir():
        return None
    return next((images / f"{case.name}{ext}" for ext in (*IMAGE_EXTENSIONS, ".PNG")
                 if (images / f"{case.name}{ext}").is_file()), None)


def _cases(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def detect(root: Path) -> bool:
    cases = _cases(root)[:_PEEK]
    hits = sum(_image_of(c) is not None for c in cases)
    return hits > 0 and hits * 2 > len(cases)


def _sample(case: Path) -> Sample:
    image = _image_of(case)
    if image is None:
        found = list_images(case / "images") if (case / "images").is_dir() else []
        what = f"holds {found[0].name}" if found else "is missing or empty"
        raise UnetkitError(f"{case / 'images'} {what}; the dsb layout expects "
                           f"{case.name}/images/{case.name}.png.")
    masks = case / "masks"
    if not masks.is_dir():
        raise UnetkitError(f"{masks} is missing; every ID folder of the dsb layout needs "
                           "masks/ with one binary PNG per object.")
    parts = tuple(list_images(masks))
    if not parts:
        raise UnetkitError(f"{masks} holds no mask files (expected one binary PNG per "
                           "object).")
    return Sample(name=case.name, image=image, mask=masks, mask_parts=parts, drop_alpha=True)


def load(root: Path, **options: object) -> DatasetSpec:
    if options:
        raise UsageError(f"Format dsb takes no options, not {', '.join(options)}.")
    cases = [c for c in _cases(root) if (c / "images").is_dir() or (c / "masks").is_dir()]
    if not cases:
        raise UnetkitError(f"{root} holds no ID/images/ID.png folders (the dsb layout).")
    samples = [_sample(c) for c in cases]
    return DatasetSpec(root=root, format=NAME, samples=samples,
                       mask=MaskSpec(kind="instance"))
