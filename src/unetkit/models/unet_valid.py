"""The original U-Net (Ronneberger et al., 2015) with unpadded ("valid") convolutions.

Every 3x3 convolution loses a pixel per side, so the output is smaller than the input (572 in,
388 out at depth 4), encoder maps are centre-cropped before concatenation, and only some input
sizes work: each map reaching a 2x2 max-pool must have an even size. The model never pads;
its `geometry` (valid sizes, `output_margin`) lets tiled inference and training line masks up
with the output window.
"""

from __future__ import annotations

import torch
from torch import nn

from unetkit.errors import UsageError
from unetkit.models.geometry import (
    Geometry,
    nearest_valid_sizes,
    valid_output_size,
    valid_output_size_or_none,
    valid_padding,
    valid_size_error,
)
from unetkit.models.layers import DoubleConv, down_blocks, encode, level_widths

__all__ = ["UNetValid", "nearest_valid_sizes", "valid_output_size"]


class UNetValid(nn.Module):
    def __init__(self, in_channels: int = 3, classes: int = 1, filters: int = 64, depth: int = 4,
                 dropout: float = 0.5, norm: str = "none") -> None:
        super().__init__()
        if depth < 1 or filters < 1:
            raise UsageError(f"depth ({depth}) and filters ({filters}) must be at least 1.")
        self.depth = depth
        widths = level_widths(filters, depth)
        self.down = down_blocks(in_channels, widths, lambda i, o: DoubleConv(i, o, norm,
                                                                             padding=0))
        ch = widths[-2]
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.bottleneck = DoubleConv(ch, widths[-1], norm, padding=0)
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        ch = widths[-1]
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(ch, w, 2, stride=2))
            self.up_conv.append(DoubleConv(2 * w, w, norm, padding=0))
            ch = w
        self.head = nn.Conv2d(ch, classes, 1)

    @property
    def geometry(self) -> Geometry:
        """Unpadded: only some sizes fit, and the output is smaller (see output_margin)."""
        return valid_padding(self.depth)

    def output_size(self, input_size: int) -> int:
        return valid_output_size(input_size, self.depth)

    def output_margin(self, input_size: int) -> int:
        """Pixels lost on each side (92 for 572 at depth 4): the output covers the input's
        centre window [margin, input_size - margin)."""
        return self.geometry.output_margin(input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        for size, what in ((h, "an input height"), (w, "an input width")):
            if valid_output_size_or_none(int(size), self.depth) is None:
                raise valid_size_error(int(size), self.depth, what)
        x, skips = encode(x, self.down, self.pool, self.dropout)
        x = self.bottleneck(x)
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips), strict=True):
            x = up(x)
            dh = (skip.shape[-2] - x.shape[-2]) // 2
            dw = (skip.shape[-1] - x.shape[-1]) // 2
            skip = skip[..., dh:dh + x.shape[-2], dw:dw + x.shape[-1]]
            x = conv(torch.cat([skip, x], dim=1))
        return self.head(x)
