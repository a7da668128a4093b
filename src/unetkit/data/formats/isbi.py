"""`isbi`: the ISBI 2012 EM segmentation challenge (the U-Net paper's data set).

Two variants, tried in this order:

1. Volumes: <root>/train-volume.tif and <root>/train-labels.tif, multi-page TIFFs with one
   slice per page (the challenge download). Page i of both is sample "slice_<iii>".
   test-volume.tif has no labels and is for prediction only.
2. PNG folders: an image folder (image/, images/ or imgs/) beside a label folder (label/ or
   labels/), either in <root>/train/ (as in the zhixuhao/unet "data/membrane" layout, whose
   <root>/test/ is for prediction only) or in <root> itself. Files pair by stem. Because
   these folder names are generic, the variant is only taken when the first readable label
   is binary (only 0/255 or 0/1) and its image is greyscale, as in ISBI; anything else falls
   through to `folder`, which detects how its masks encode classes.

Labels: 255 = cell interior (class "cell"), 0 = membrane (class "membrane").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unetkit.data.formats.base import DatasetSpec, MaskSpec, Sample
from unetkit.data.formats.folder import list_images, no_images_message, pair_by_stem
from unetkit.data.readers import read_array
from unetkit.errors import UnetkitError

NAME = "isbi"
DESCRIPTION = ("ISBI 2012 EM: train-volume.tif + train-labels.tif (one slice per page), or "
               "[train/]image(s)/ + label(s)/ PNGs with greyscale images and 0/255 labels; "
               "255 = cell interior, 0 = membrane")
CLASS_NAMES = ["membrane", "cell"]
VOLUME, LABELS = "train-volume", "train-labels"
IMAGE_DIRS = ("image", "images", "imgs")
LABEL_DIRS = ("label", "labels")
_PEEK = 3  # label files tried when deciding the PNG variant


def _tiff(root: Path, stem: str) -> Path | None:
    return next((root / f"{stem}{ext}" for ext in (".tif", ".tiff")
                 if (root / f"{stem}{ext}").is_file()), None)


def _png_dirs(root: Path) -> tuple[Path, Path] | None:
    for base in (root / "train", root):
        images = next((base / d for d in IMAGE_DIRS if (base / d).is_dir()), None)
        labels = next((base / d for d in LABEL_DIRS if (base / d).is_dir()), None)
        if images is not None and labels is not None:
            return images, labels
    return None


def _looks_like_isbi(images_dir: Path, labels_dir: Path) -> bool:
    """First readable label binary and its image greyscale (see the module docstring)."""
    samples = [s for s in pair_by_stem(list_images(images_dir), list_images(labels_dir))
               if s.mask is not None]
    for s in samples[:_PEEK]:
        try:
            label, image = read_array(s.mask), read_array(s.image)
        except UnetkitError:
            continue
        values = set(np.unique(label).tolist())
        grey = image.ndim == 2 or image.shape[-1] == 1 or (
            image.shape[-1] >= 3 and np.array_equal(image[..., 0], image[..., 1])
            and np.array_equal(image[..., 0], image[..., 2]))
        return label.ndim == 2 and grey and (values <= {0, 255} or values <= {0, 1})
    return False


def detect(root: Path) -> bool:
    if _tiff(root, VOLUME) is not None:
        return True
    dirs = _png_dirs(root)
    return dirs is not None and _looks_like_isbi(*dirs)


def count_pages(path: Path) -> int:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            n = len(tif.pages)
    except Exception as exc:  # tifffile raises its own error types
        raise UnetkitError(f"{path} is not a readable TIFF ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else 'corrupt'}).") from exc
    if n == 0:
        raise UnetkitError(f"{path} is not a readable TIFF (it holds no image pages).")
    return n


def _load_volume(root: Path, volume: Path) -> list[Sample]:
    labels = _tiff(root, LABELS)
    if labels is None:
        raise UnetkitError(f"{volume} has no {LABELS}.tif beside it to give its labels.")
    n, n_labels = count_pages(volume), count_pages(labels)
    if n != n_labels:
        raise UnetkitError(f"{labels} has {n_labels} pages but {volume.name} has {n}; they "
                           f"must match page for page.")
    width = max(3, len(str(n - 1)))
    return [Sample(name=f"slice_{i:0{width}d}", image=volume, mask=labels, image_page=i,
                   mask_page=i) for i in range(n)]


def load(root: Path, **_: object) -> DatasetSpec:
    volume = _tiff(root, VOLUME)
    if volume is not None:
        samples = _load_volume(root, volume)
    else:
        dirs = _png_dirs(root)
        if dirs is None:
            raise UnetkitError(f"Neither {root / (VOLUME + '.tif')} nor image/ + label/ "
                               f"folders were found in {root}.")
        images = list_images(dirs[0])
        if not images:
            raise UnetkitError(no_images_message(dirs[0]))
        samples = pair_by_stem(images, list_images(dirs[1]))
    return DatasetSpec(root=root, format=NAME, samples=samples,
                       mask=MaskSpec(kind="binary", class_names=list(CLASS_NAMES)))
