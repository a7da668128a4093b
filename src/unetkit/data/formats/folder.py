"""`folder`: images/ and masks/ with matching stems, or train|val|test/ each holding both."""

from __future__ import annotations

import unicodedata
from pathlib import Path

from unetkit.data.formats.base import IMAGE_EXTENSIONS, DatasetSpec, MaskSpec, Sample
from unetkit.errors import UnetkitError, UsageError

NAME = "folder"
DESCRIPTION = ("images/ and masks/ (or labels/) with matching file stems (a mask may end in "
               "_mask, _label, _gt etc.), or train/ val/ (or valid/) test/ each holding "
               "images/ and masks/, or images at the top with masks/ inside; how masks encode "
               "classes is detected from the masks; option unlabelled=skip leaves images "
               "without a mask out")
IMAGE_DIRS = ("images", "image", "imgs")
MASK_DIRS = ("masks", "mask", "labels", "label")
MASK_SUFFIXES = ("", "_mask", "-mask", "_masks", "_label", "_labels", "_gt", "_seg", "_annot")
SPLIT_NAMES = ("train", "val", "test")
SPLIT_ALIASES = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}


def list_images(folder: Path) -> list[Path]:
    """The supported image files in `folder` (hidden files such as macOS ._ copies skipped)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.startswith("."))


def no_images_message(folder: Path) -> str:
    """One sentence saying why `folder` yields no images: missing, empty or wrong file types."""
    supported = ", ".join(IMAGE_EXTENSIONS)
    if not folder.is_dir():
        return f"{folder} does not exist (expected a folder of images: {supported})."
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    if not files:
        return f"{folder} holds no images; it is empty (supported types: {supported})."
    exts = sorted({p.suffix.lower() or "files without an extension" for p in files})
    return (f"{folder} holds no supported images, only {', '.join(exts)} "
            f"({len(files)} file{'s' * (len(files) != 1)}); supported types are {supported}.")


def option(format_name: str, options: dict, key: str, default: str,
           choices: tuple[str, ...]) -> str:
    """A string option of a format, checked against its choices (UsageError otherwise)."""
    value = str(options.get(key, default)).strip().lower()
    if value in ("true", "yes", "1") and "true" in choices:
        value = "true"
    if value in ("false", "no", "0") and "false" in choices:
        value = "false"
    if value not in choices:
        raise UsageError(f"Option {key}={options.get(key)!r} of format {format_name} must be "
                         f"one of {', '.join(choices)}.")
    return value


def _pair_dirs(base: Path) -> tuple[Path, Path] | None:
    """The (images, masks) folder pair directly inside `base`, if there is one."""
    images = next((base / d for d in IMAGE_DIRS if (base / d).is_dir()), None)
    masks = next((base / d for d in MASK_DIRS if (base / d).is_dir()), None)
    return (images, masks) if images is not None and masks is not None else None


def _flat_dirs(root: Path) -> tuple[Path, Path] | None:
    """(root, masks) for a flat folder of images with its masks/ inside (as the studio
    writes them), when there is no images/ folder."""
    if any((root / d).is_dir() for d in IMAGE_DIRS):
        return None
    masks = next((root / d for d in MASK_DIRS if (root / d).is_dir()), None)
    return (root, masks) if masks is not None and list_images(root) else None


def _split_dirs(root: Path) -> list[tuple[str, Path]]:
    return [(split, root / d) for split, names in SPLIT_ALIASES.items() for d in names
            if _pair_dirs(root / d) is not None]


def detect(root: Path) -> bool:
    return _pair_dirs(root) is not None or bool(_split_dirs(root)) or \
        _flat_dirs(root) is not None


def _key(stem: str) -> str:
    return unicodedata.normalize("NFC", stem).lower()


def pair_by_stem(images: list[Path], masks: list[Path], prefix: str = "",
                 suffixes: tuple[str, ...] = MASK_SUFFIXES, **fields: object) -> list[Sample]:
    """Samples for `images`, each with the mask whose stem is the image's plus a suffix.

    Stems match case-insensitively and in Unicode NFC form, so 'zelle ä.png' pairs with a mask
    whose name spells the ä decomposed (as files copied from macOS do).
    """
    by_stem: dict[str, Path] = {}
    for m in masks:
        by_stem.setdefault(_key(m.stem), m)
    samples, seen = [], set()
    for img in images:
        stem = _key(img.stem)
        found = next((by_stem[stem + s] for s in suffixes if stem + s in by_stem), None)
        name = prefix + (img.name if img.stem in seen else img.stem)  # a.png + a.jpg
        seen.add(img.stem)
        samples.append(Sample(name=name, image=img, mask=found, **fields))
    return samples


def load(root: Path, unlabelled: str = "error", **_: object) -> DatasetSpec:
    """The samples; with unlabelled=skip, images without a mask are left out (a data set
    being annotated), else they are reported as bad pairs."""
    skip = option(NAME, {"unlabelled": unlabelled}, "unlabelled", "error",
                  ("error", "skip")) == "skip"
    pair = _pair_dirs(root) or _flat_dirs(root)
    if pair is not None:
        images_dir, masks_dir = pair
        samples = pair_by_stem(list_images(images_dir), list_images(masks_dir))
        official, where = False, images_dir
    else:
        samples, official, where = [], True, root
        for split, base in _split_dirs(root):
            images_dir, masks_dir = _pair_dirs(base)
            samples += pair_by_stem(list_images(images_dir), list_images(masks_dir),
                                    prefix=f"{base.name}/", split=split)
            if where is root:
                where = images_dir
    if not samples:
        if where is root and pair is None:
            raise UnetkitError(f"No {'/'.join(IMAGE_DIRS)} and {'/'.join(MASK_DIRS)} folders "
                               f"were found in {root}.")
        raise UnetkitError(no_images_message(where))
    if skip:
        samples = [s for s in samples if s.mask is not None]
        if not samples:
            raise UnetkitError(f"None of the images in {where} has a mask yet.")
    return DatasetSpec(root=root, format=NAME, samples=samples, mask=MaskSpec(kind="auto"),
                       official_splits=official)
