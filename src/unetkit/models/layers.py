"""Building blocks shared by the U-Net variants."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from unetkit.errors import UsageError

NORMS = ("none", "batch", "group", "instance")


def norm_layer(norm: str, channels: int, dims: int = 2) -> nn.Module:
    """The normalisation after each convolution, for 2-D (or, dims=3, volumetric) maps."""
    if norm == "none":
        return nn.Identity()
    if norm == "batch":
        return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(channels)
    if norm == "group":
        return nn.GroupNorm(min(32, channels // 4) or 1, channels)
    if norm == "instance":
        return (nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d)(channels, affine=True)
    raise UsageError(f"norm {norm!r} is unknown; choose one of {', '.join(NORMS)}.")


def level_widths(filters: int, depth: int) -> list[int]:
    """Channels per level, doubling with depth; the last is the bottleneck's."""
    return [filters * 2**i for i in range(depth + 1)]


def down_blocks(in_channels: int, widths: list[int],
                block: Callable[[int, int], nn.Module]) -> nn.ModuleList:
    """The contracting path: one `block(in, out)` per level above the bottleneck."""
    blocks, ch = nn.ModuleList(), in_channels
    for w in widths[:-1]:
        blocks.append(block(ch, w))
        ch = w
    return blocks


def encode(x: torch.Tensor, down: nn.ModuleList, pool: nn.Module,
           dropout: nn.Module | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run the contracting path: (input to the bottleneck, skip tensors, shallowest first).
    `dropout` follows the deepest block, as in the classic U-Net."""
    skips = []
    for i, block in enumerate(down):
        x = block(x)
        if dropout is not None and i == len(down) - 1:
            x = dropout(x)
        skips.append(x)
        x = pool(x)
    return x, skips


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by the chosen normalisation and ReLU."""

    def __init__(self, in_ch: int, out_ch: int, norm: str = "none", padding: int = 1) -> None:
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=padding, bias=bias), norm_layer(norm, out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=padding, bias=bias), norm_layer(norm, out_ch),
            nn.ReLU(inplace=True),
        )


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad H and W up to a multiple (mirrored where possible) so any input size works."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


class Float32Conv2d(nn.Conv2d):
    """A Conv2d that runs in float32 inside a mixed-precision autocast region.

    Under CPU bf16 autocast, oneDNN's backward of strided depthwise convolutions is many
    times slower than its float32 one (docs/decisions.md, "bf16 and depthwise
    convolutions"); the forward alone is not, so only training swaps these in.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._conv_forward(x.float(), self.weight.float(),
                                      None if self.bias is None else self.bias.float())


def float32_strided_depthwise(model: nn.Module, on: bool = True) -> int:
    """Make every strided depthwise Conv2d of `model` a Float32Conv2d in place (`on=False`:
    back to Conv2d); same parameters and state-dict names. Returns how many there are."""
    found = 0
    for m in model.modules():
        if (type(m) in (nn.Conv2d, Float32Conv2d) and m.groups > 1
                and m.groups == m.in_channels == m.out_channels and max(m.stride) > 1):
            m.__class__ = Float32Conv2d if on else nn.Conv2d
            found += 1
    return found
