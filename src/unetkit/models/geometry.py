"""What sizes a model takes and gives back: its geometry, declared by the model itself.

Predict, tiling, ONNX export, training and the planner ask `geometry_of(model)` instead of
guessing from class names (as segmentation_models_pytorch models declare
`requires_divisible_input_shape` and `output_stride`). Every model the registry builds has
a `geometry` property; an OnnxEngine rebuilds it from the export's metadata.

* `pad_multiple`: a same-padding model pads its input up to a multiple of this inside
  `forward` (1 for valid-padding models, which never pad).
* `pooling_grid`: the shift the model is equivariant to (2^depth for a U-Net, the total
  stride for pretrained encoders); tiles start on multiples of it.
* `valid_padding`: unpadded convolutions (the 2015 U-Net): the output is smaller than the
  input by `output_margin(size)` per side and only some input sizes work (`depth` poolings).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from unetkit.errors import UsageError


def valid_output_size_or_none(size: int, depth: int) -> int | None:
    """Output side of a valid-padding U-Net for an input side, None when it does not fit:
    every map reaching a 2x2 max-pool must have an even size."""
    for _ in range(depth):
        size -= 4
        if size <= 0 or size % 2:
            return None
        size //= 2
    size -= 4
    if size <= 0:
        return None
    for _ in range(depth):
        size = 2 * size - 4
        if size <= 0:
            return None
    return size


def nearest_valid_sizes(size: int, depth: int = 4) -> tuple[int | None, int]:
    """(largest valid input <= size or None if there is none, smallest valid input >= size)."""
    smaller = next((s for s in range(size, 0, -1) if valid_output_size_or_none(s, depth)), None)
    larger = next(s for s in range(max(size, 1), size + 2**depth * 64)
                  if valid_output_size_or_none(s, depth))
    return smaller, larger


def valid_size_error(size: int, depth: int, what: str) -> UsageError:
    """The one message for a size a valid-padding U-Net cannot take, naming the nearest."""
    smaller, larger = nearest_valid_sizes(size, depth)
    options = f"{smaller} or {larger}" if smaller else f"{larger} or more"
    return UsageError(f"unet-valid (depth {depth}) cannot take {what} of {size} pixels; the "
                      f"nearest sizes it accepts are {options}.")


def valid_output_size(input_size: int, depth: int = 4) -> int:
    """Output side length for an input side length (572 -> 388 at depth 4)."""
    out = valid_output_size_or_none(input_size, depth)
    if out is None:
        raise valid_size_error(input_size, depth, "an input size")
    return out


@dataclass(frozen=True)
class Geometry:
    """A model's size rules; build with `same_padding` or `valid_padding`."""

    pad_multiple: int
    pooling_grid: int
    valid_padding: bool = False
    depth: int = 0  # poolings of a valid-padding model (its valid sizes depend on it)

    def __post_init__(self) -> None:
        if self.pad_multiple < 1 or self.pooling_grid < 1:
            raise UsageError(f"pad_multiple ({self.pad_multiple}) and pooling_grid "
                             f"({self.pooling_grid}) must be at least 1.")
        if self.valid_padding and (self.depth < 1 or self.pad_multiple != 1):
            raise UsageError("A valid-padding geometry needs depth >= 1 and pad_multiple 1.")

    def output_size(self, size: int) -> int:
        """Output side for an input side (the same side for same-padding models)."""
        return valid_output_size(size, self.depth) if self.valid_padding else size

    def output_margin(self, size: int) -> int:
        """Pixels lost per side: the output covers the input's window [margin, size - margin)
        (92 for 572 at depth 4; 0 for same-padding models)."""
        return (size - self.output_size(size)) // 2

    def nearest_valid_sizes(self, size: int) -> tuple[int | None, int]:
        """(largest accepted side <= size or None, smallest accepted side >= size)."""
        return nearest_valid_sizes(size, self.depth) if self.valid_padding else (size, size)

    def nearest_valid_size(self, size: int) -> int:
        """The accepted side closest below `size` (or above, when none is below)."""
        smaller, larger = self.nearest_valid_sizes(size)
        return smaller or larger


def same_padding(multiple: int, grid: int | None = None) -> Geometry:
    """A model that pads any input up to `multiple` inside and crops its logits back."""
    return Geometry(pad_multiple=multiple, pooling_grid=grid or multiple)


def valid_padding(depth: int) -> Geometry:
    """An unpadded U-Net with `depth` poolings (never pads; equivariant to 2^depth shifts)."""
    return Geometry(pad_multiple=1, pooling_grid=2**depth, valid_padding=True, depth=depth)


def combined(geometries: Iterable[Geometry]) -> Geometry:
    """The geometry of models run side by side on one input (an ensemble's members)."""
    unique = list(dict.fromkeys(geometries))
    if not unique:
        raise UsageError("An ensemble needs at least one member.")
    if len(unique) == 1:
        return unique[0]
    if any(g.valid_padding for g in unique):
        raise UsageError("Valid-padding models can only be combined with identical ones.")
    return same_padding(math.lcm(*(g.pad_multiple for g in unique)),
                        math.lcm(*(g.pooling_grid for g in unique)))


# Modules unetkit did not build (a user's own network, a wrapper such as a compiled model)
# declare nothing: a power of two that suits the common encoders, no valid padding.
UNDECLARED = same_padding(32)


def geometry_of(model: Any) -> Geometry:
    """The geometry `model` declares (every registry model and OnnxEngine does)."""
    declared = getattr(model, "geometry", None)
    return declared if isinstance(declared, Geometry) else UNDECLARED
