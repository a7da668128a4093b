"""Raw mask pixels -> class indices, following a MaskSpec; auto-detection of the mask kind."""

from __future__ import annotations

import numpy as np

from unetkit.data.formats.base import MaskSpec
from unetkit.data.transforms import IGNORE
from unetkit.errors import UnetkitError

MAX_INDEX_CLASSES = 64


def infer_mask_spec(raw_masks: list[np.ndarray], names: list[str]) -> MaskSpec:
    """Guess how masks encode classes from a sample of them (binary, index, palette, instance)."""
    if any(m.ndim == 3 for m in raw_masks):
        colors = sorted({tuple(int(v) for v in c) for m in raw_masks
                         for c in np.unique(m.reshape(-1, m.shape[-1]), axis=0)})
        if len(colors) > MAX_INDEX_CLASSES:
            raise UnetkitError(f"Mask {names[0]} has {len(colors)} colours; colour masks need a "
                               f"colour table (at most {MAX_INDEX_CLASSES} classes).")
        black_first = sorted(colors, key=lambda c: (c != (0, 0, 0), c))
        return MaskSpec(kind="palette", colors=[list(c) for c in black_first],
                        class_names=[f"class_{i}" for i in range(len(black_first))])
    values = np.unique(np.concatenate([np.unique(m) for m in raw_masks]))
    vmax = int(values.max()) if values.size else 0
    if set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}:
        return MaskSpec(kind="binary")
    if raw_masks[0].dtype == np.uint16 or raw_masks[0].dtype == np.int32 or vmax >= 256:
        return MaskSpec(kind="instance")
    if raw_masks[0].dtype == np.uint8 and len(values) > 2 and vmax > MAX_INDEX_CLASSES:
        # anti-aliased or JPEG-saved binary masks: grey levels spread between 0 and 255
        return MaskSpec(kind="binary")
    return MaskSpec(kind="index", class_names=[f"class_{i}" for i in range(vmax + 1)])


def to_class_index(raw: np.ndarray, spec: MaskSpec, name: str = "mask") -> np.ndarray:
    """Map a raw mask to HxW uint8 class indices (the ignore index passes through)."""
    kind = spec.kind
    if kind == "palette":
        if raw.ndim == 2:  # read_raw_mask collapses an all-grey colour mask (e.g. all black)
            raw = np.repeat(raw[..., None], 3, axis=-1)
        out = np.full(raw.shape[:2], 255, dtype=np.uint8)
        for idx, color in enumerate(spec.colors or []):
            out[np.all(raw == np.asarray(color, dtype=raw.dtype), axis=-1)] = idx
        if (out == 255).any():
            bad = raw[out == 255][0].tolist()
            raise UnetkitError(f"{name} has colour {bad}, which is not in the colour table.")
        return out
    if raw.ndim == 3:
        raw = raw[..., 0]
    if kind == "binary":
        threshold = 127 if raw.max() > 1 else 0
        return (raw > threshold).astype(np.uint8)
    if kind == "instance":
        return (raw > 0).astype(np.uint8)
    if kind == "map":
        lut = np.full(max(256, int(raw.max()) + 1), 255, dtype=np.uint8)
        for k, v in (spec.value_map or {}).items():
            lut[int(k)] = 255 if v is None else int(v)
        out = lut[raw.astype(np.int64)]
        unknown = (out == 255) & ~np.isin(raw, [k for k, v in (spec.value_map or {}).items()
                                               if v is None or v == 255])
        if unknown.any():
            raise UnetkitError(f"{name} has value {int(raw[unknown][0])}, which the mask "
                               f"table does not know (known: {sorted(spec.value_map or {})}).")
        return out
    # index masks
    out = raw.astype(np.int64)
    bad = values_outside(out, spec.num_classes, spec.ignore_index)
    if bad:
        # 255 is the partial-label convention's "not annotated" (prepare.UNLABELED_NAMES)
        word = "unlabeled" if spec.ignore_index == IGNORE else "ignore"
        ignore = "" if spec.ignore_index is None else f", {spec.ignore_index} = {word}"
        raise UnetkitError(f"{name} has {describe_values(bad)} but the data set declares "
                           f"{spec.num_classes} classes (0..{spec.num_classes - 1}{ignore}).")
    return out.astype(np.uint8)


def values_outside(raw: np.ndarray, num_classes: int, ignore_index: int | None = None
                   ) -> list[int]:
    """The distinct values of an index mask that are no class id 0..num_classes-1 (or ignore)."""
    valid = (raw >= 0) & (raw < num_classes)
    if ignore_index is not None:
        valid |= raw == ignore_index
    return [] if valid.all() else [int(v) for v in np.unique(raw[~valid])]


def describe_values(values: list[int], limit: int = 5) -> str:
    """'value 7' or 'values 5, 7 and 9' (the first `limit`, then how many more)."""
    if len(values) == 1:
        return f"value {values[0]}"
    shown = ", ".join(str(v) for v in values[:limit])
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    if not more:
        shown = ", ".join(str(v) for v in values[:-1]) + f" and {values[-1]}"
    return f"values {shown}{more}"
