"""Class indices -> raw mask pixels in a data set's own convention: the inverse of
`data.masks.to_class_index`, so a mask written here reads back as the same class indices.

Used where masks are written into an existing data set (the studio's saved corrections), so
that `unetkit fit --data` reads them like the ones already there.
"""

from __future__ import annotations

import numpy as np

from unetkit.data.formats.base import MaskSpec
from unetkit.data.masks import describe_values
from unetkit.errors import UnetkitError

UNLABELED = 255  # the value of a pixel nobody annotated, in class-index masks
WRITABLE_KINDS = ("binary", "index", "palette", "instance", "map")


def encode_mask(index: np.ndarray, spec: MaskSpec, foreground: int = 255,
                name: str = "The mask") -> np.ndarray:
    """HxW class indices (255 = not annotated) -> the raw mask `spec` describes.

    binary: 0 and `foreground` (255, or 1 for 0/1 data sets); index: the indices themselves;
    palette: HxWx3 colours from the table; instance: 16-bit connected-component labels of the
    foreground; map: the first raw value each class comes from. Pixels not annotated are
    written as the convention's ignore value (index masks with an ignore index, value tables
    with an ignored value); where there is none they are refused with one sentence, since
    writing them as a class would teach the model a wrong answer.
    """
    index = np.asarray(index)
    if index.ndim != 2:
        raise UnetkitError(f"{name} must be a 2-D array of class indices, not {index.shape}.")
    if spec.kind not in WRITABLE_KINDS:
        raise UnetkitError(f"Masks of kind {spec.kind!r} cannot be written; use one of "
                           f"{', '.join(WRITABLE_KINDS)}.")
    if foreground not in (1, 255):
        raise UnetkitError(f"Binary masks store foreground as 1 or 255, not {foreground}.")
    index = index.astype(np.int64)
    unlabeled = index == UNLABELED
    inverse = _map_inverse(spec) if spec.kind == "map" else {}
    stored = spec.ignore_index if spec.kind == "index" else inverse.get(UNLABELED)
    if unlabeled.any() and stored is None:
        raise UnetkitError(f"{name} has pixels marked as not annotated (255), but this data "
                           f"set's {spec.kind} masks cannot store them; annotate every pixel.")
    valid = ((index >= 0) & (index < spec.num_classes)) | unlabeled
    if not valid.all():
        raise UnetkitError(f"{name} has {describe_values(np.unique(index[~valid]).tolist())} "
                           f"but the data set has {spec.num_classes} classes "
                           f"(0..{spec.num_classes - 1}, 255 = not annotated).")
    if spec.kind == "binary":
        return np.where(index > 0, foreground, 0).astype(np.uint8)
    if spec.kind == "index":
        return np.where(unlabeled, stored if stored is not None else 0, index).astype(np.uint8)
    if spec.kind == "palette":
        table = np.asarray(spec.colors or [], dtype=np.uint8).reshape(-1, 3)
        if len(table) < spec.num_classes:
            raise UnetkitError(f"The colour table has {len(table)} colours for "
                               f"{spec.num_classes} classes.")
        return table[index]
    if spec.kind == "instance":
        from skimage.measure import label

        return label(index > 0, connectivity=2).astype(np.uint16)
    return _encode_map(index, inverse)


def _map_inverse(spec: MaskSpec) -> dict[int, int]:
    """class -> the first raw value the value table maps to it (255: not annotated)."""
    inverse: dict[int, int] = {}
    for raw, cls in sorted((spec.value_map or {}).items()):
        inverse.setdefault(UNLABELED if cls is None else int(cls), int(raw))
    return inverse


def _encode_map(index: np.ndarray, inverse: dict[int, int]) -> np.ndarray:
    """Through the inverse of the value table: each class is written as its first raw value."""
    missing = [c for c in np.unique(index).tolist() if c not in inverse]
    if missing:
        raise UnetkitError(f"The mask table has no raw value for {describe_values(missing)}.")
    lut = np.zeros(256, dtype=np.int64)
    for cls, raw in inverse.items():
        lut[cls] = raw
    return lut[index].astype(np.uint8 if lut.max() < 256 else np.uint16)
