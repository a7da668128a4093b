"""The data set the studio annotates: its images, its masks and how masks encode classes.

Two layouts of the `folder` format: a data set root with images/ (and masks/, created with
the first saved mask), or a flat folder of images whose masks go into masks/ inside it.
Masks are saved in the data set's own convention (binary 0/255 or 0/1, class index, colour
palette...) through the data layer's encoder, atomically, the previous version kept under
.unetkit/history/, so `unetkit fit --data` reads them like the others. A new data set (no
masks yet) gets 8-bit class-index masks and a classes.txt whose `unlabeled` line declares
that 255 means "not annotated".
"""

from __future__ import annotations

import io
import threading
import zipfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from unetkit.data.formats import DatasetSpec, MaskSpec, Sample
from unetkit.data.formats.folder import (
    IMAGE_DIRS,
    MASK_DIRS,
    SPLIT_ALIASES,
    list_images,
    no_images_message,
    pair_by_stem,
)
from unetkit.data.loading import read_mask, read_sample_image, read_sample_raw_mask
from unetkit.data.mask_writer import UNLABELED, encode_mask
from unetkit.data.prepare import (
    CLASSES_FILE,
    apply_class_names,
    declares_unlabeled,
    resolve_mask_spec,
)
from unetkit.data.readers import TIFF_EXTENSIONS, declared_size, exif_orientation
from unetkit.errors import UnetkitError
from unetkit.io_utils import atomic_path, atomic_write_bytes, atomic_write_text, ensure_dir
from unetkit.serve.errors import NotFound
from unetkit.serve.security import check_name, inside

WORK_DIR = ".unetkit"  # the studio's own files inside the data folder
LOSSLESS = (".png", ".tif", ".tiff", ".bmp", ".gif")  # a mask is rewritten in its own format
SWAPS_SIDES = (5, 6, 7, 8)  # EXIF orientations that turn the stored image by 90 degrees


@dataclass
class Entry:
    """One image of the data set: its name (relative to the images folder) and files."""

    name: str
    sample: Sample

    @property
    def path(self) -> Path:
        return self.sample.image

    @property
    def mask(self) -> Path | None:
        return self.sample.mask


class StudioData:
    """The images and masks of one folder, re-listed when files appear or go."""

    def __init__(self, root: str | Path, class_names: list[str] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise UnetkitError(f"--data {self.root} is not a folder.")
        self.images_dir, self.masks_dir = _layout(self.root)
        self.work = self.root / WORK_DIR
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._images: dict[str, Entry] = {}
        self._sizes: dict[tuple[Path, int], tuple[int, int]] = {}
        self.refresh()
        if not self._images:
            raise UnetkitError(no_images_message(self.images_dir))
        self.spec, self.new = self._mask_spec(class_names or ["background", "foreground"])
        self.foreground = self._binary_value()
        self.suffix = self._mask_suffix()

    # ------------------------------------------------------------------ listing
    def refresh(self) -> None:
        """Re-list the files when the images or masks folder changed since the last look."""
        stamp = tuple(d.stat().st_mtime_ns if d.is_dir() else None
                      for d in (self.images_dir, self.masks_dir))
        with self._lock:
            if stamp == self._stamp:
                return
            masks = list_images(self.masks_dir) if self.masks_dir.is_dir() else []
            samples = pair_by_stem(list_images(self.images_dir), masks)
            self._images = {s.image.relative_to(self.images_dir).as_posix(): Entry(
                s.image.relative_to(self.images_dir).as_posix(), s) for s in samples}
            self._stamp = stamp

    def images(self) -> list[Entry]:
        self.refresh()
        return list(self._images.values())

    def get(self, name: str) -> Entry:
        """The image called `name`, or 400 (a name that could leave the folder) / 404."""
        check_name(name)
        self.refresh()
        found = self._images.get(name)
        if found is None:
            raise NotFound(f"No image named {name!r} in {self.images_dir}.")
        return found

    def labelled(self) -> list[Entry]:
        return [i for i in self.images() if i.mask is not None]

    def size(self, image: Entry) -> tuple[int, int]:
        """(width, height) as the image is read (EXIF orientation applied): from the file
        header, or decoded for TIFFs (channel layouts) and headers that say nothing."""
        key = (image.path, image.path.stat().st_mtime_ns)
        if key not in self._sizes:
            tiff = image.path.suffix.lower() in TIFF_EXTENSIONS
            size = None if tiff else declared_size(image.path)
            if size is not None and exif_orientation(image.path) in SWAPS_SIDES:
                size = (size[1], size[0])
            if size is None:
                h, w = read_sample_image(image.sample).shape[:2]
                size = (w, h)
            self._sizes[key] = size
        return self._sizes[key]

    # ------------------------------------------------------------------ reading
    def read_image(self, image: Entry) -> np.ndarray:
        return read_sample_image(image.sample)

    def read_truth(self, image: Entry) -> np.ndarray | None:
        """HxW class indices (255 = not annotated) of the image's mask, or None."""
        return None if image.mask is None else read_mask(image.sample, self.spec)

    @property
    def class_names(self) -> list[str]:
        return list(self.spec.class_names)

    @property
    def unlabeled_value(self) -> int | None:
        """255 when masks can say "not annotated" (declared in classes.txt, or new)."""
        return UNLABELED if self.spec.kind == "index" and self.spec.ignore_index == UNLABELED \
            else None

    # ------------------------------------------------------------------ writing
    def save_mask(self, image: Entry, index: np.ndarray) -> tuple[str, str | None]:
        """Write class indices as the image's mask; (saved, previous) relative to the root."""
        width, height = self.size(image)
        if index.shape != (height, width):
            raise UnetkitError(f"The mask is {index.shape[1]}x{index.shape[0]} but "
                               f"{image.name} is {width}x{height}; send it at full size.")
        if (index == UNLABELED).any() and self.unlabeled_value is None:
            raise UnetkitError(self._no_unlabeled_message())
        raw = encode_mask(index, self.spec, self.foreground, name=f"The mask for {image.name}")
        old = image.mask
        target = old if old is not None and old.suffix.lower() in LOSSLESS else \
            self.masks_dir / f"{image.path.stem}{self.suffix}.png"
        ensure_dir(inside(self.masks_dir, self.root, "The masks folder"))
        inside(target, self.root, "The mask file")
        previous = self._keep(old) if old is not None else None
        with atomic_path(target) as tmp:
            _write(raw, tmp, target.suffix.lower())
        if old is not None and old != target:
            old.unlink()  # a lossy (JPEG) mask: kept in history, replaced by a PNG
        if self.new:
            self._declare_classes()
        self.refresh()
        return self.relative(target), None if previous is None else self.relative(previous)

    def _keep(self, old: Path) -> Path:
        """Copy the mask about to be replaced into .unetkit/history/<stem>.<UTC time>.ext."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        history = inside(self.work / "history", self.root, "The history folder")
        copy = history / f"{old.stem}.{stamp}{old.suffix.lower()}"
        atomic_write_bytes(inside(copy, self.root, "The history file"), old.read_bytes())
        return copy

    def _declare_classes(self) -> None:
        """A new data set's classes.txt: the class names, then `unlabeled` (255)."""
        path = inside(self.root / CLASSES_FILE, self.root, "classes.txt")
        if not declares_unlabeled(self.root):
            atomic_write_text(path, "\n".join([*self.class_names, "unlabeled"]) + "\n")
        self.new = False

    def masks_zip(self) -> bytes:
        """Every mask file, named as in the data folder, in one zip."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for image in self.labelled():
                zf.write(image.mask, self.relative(image.mask))
            if (self.root / CLASSES_FILE).is_file():
                zf.write(self.root / CLASSES_FILE, CLASSES_FILE)
        return buffer.getvalue()

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def info(self) -> dict:
        images = self.images()
        return {"root": str(self.root), "images": len(images),
                "labelled": sum(i.mask is not None for i in images),
                "classes": self.class_names, "colors": _colors(len(self.class_names)),
                "unlabeled_value": self.unlabeled_value, "mask_convention": self.spec.kind}

    # ------------------------------------------------------------------ conventions
    def _mask_spec(self, names: list[str]) -> tuple[MaskSpec, bool]:
        """(how masks encode classes, whether the data set has no masks yet)."""
        labelled = [i.sample for i in self._images.values() if i.mask is not None]
        if labelled:
            spec = DatasetSpec(self.root, "folder", labelled, MaskSpec(kind="auto"))
            return resolve_mask_spec(spec), False
        if len(names) < 2:
            raise UnetkitError(f"--classes needs at least 2 names, not {names}.")
        spec = MaskSpec(kind="index", class_names=names, ignore_index=UNLABELED)
        return apply_class_names(spec, self.root), True

    def _binary_value(self) -> int:
        """1 for a data set of 0/1 binary masks, else 255."""
        labelled = self.labelled()[:8]
        if self.spec.kind != "binary" or not labelled:
            return 255
        top = max(int(read_sample_raw_mask(i.sample).max()) for i in labelled)
        return 1 if top == 1 else 255

    def _mask_suffix(self) -> str:
        """The ending most mask names add to their image's stem (e.g. _mask), else none."""
        found = Counter(i.mask.stem[len(i.path.stem):] for i in self.labelled()
                        if i.mask.stem.lower().startswith(i.path.stem.lower()))
        return found.most_common(1)[0][0] if found else ""

    def _no_unlabeled_message(self) -> str:
        if self.spec.kind == "index":
            return (f"This data set's class-index masks do not declare 255 as 'not "
                    f"annotated'; annotate every pixel, or add a line `unlabeled` to "
                    f"{self.root / CLASSES_FILE} to save partial masks.")
        value = "0/1" if self.foreground == 1 else "0/255"
        what = f"binary ({value})" if self.spec.kind == "binary" else self.spec.kind
        return (f"This data set's masks are {what}, which cannot mark pixels as not "
                f"annotated; annotate every pixel before saving.")


def _layout(root: Path) -> tuple[Path, Path]:
    """(images folder, masks folder) of a data set root or a flat folder of images."""
    images = next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), None)
    masks = next((root / d for d in MASK_DIRS if (root / d).is_dir()), root / "masks")
    if images is None and not list_images(root):
        split = [root / d for names in SPLIT_ALIASES.values() for d in names
                 if (root / d / "images").is_dir()]
        hint = f"; it is split into {', '.join(p.name for p in split)}: serve one of them " \
               f"(e.g. --data {split[0]})" if split else ""
        raise UnetkitError(f"--data {root} holds no images and no images/ folder; the studio "
                           f"edits images/ + masks/ or a flat folder of images{hint}.")
    return images or root, masks


def _write(raw: np.ndarray, path: Path, suffix: str) -> None:
    """Write a raw mask in the format its file name says (16-bit labels stay 16-bit)."""
    if suffix in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(path, raw, photometric="rgb" if raw.ndim == 3 else "minisblack")
        return
    formats = {".png": "PNG", ".bmp": "BMP", ".gif": "GIF"}
    Image.fromarray(raw).save(path, format=formats[suffix])


def _colors(n: int) -> list[list[int]]:
    from unetkit.data.overlay import palette

    return palette(n).tolist()
