"""The classic same-padding U-Net, as the Keras/R `unet` package builds it.

Per level two 3x3 'same' convolutions with ReLU, 2x2 max-pooling, filters doubling per level,
dropout before the bottleneck, 2x2 stride-2 transposed-convolution upsampling, concatenation
with the matching encoder map, and a 1x1 output convolution. With 3 input channels, 1 class
and no normalisation it has 31,031,745 parameters.

`stem=2` runs the same network on a space-to-depth copy of the input (each 2x2 block of pixels
becomes 4 channels) and turns 4 output channels per position back into a 2x2 block, so every
pixel still gets its own logit. Thin full-resolution layers are the slowest per FLOP on CPU
(memory-bound convolutions), so the stem trains several times faster there. It learns less
per epoch, so it pays off with longer budgets (measurements: docs/decisions.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unetkit.errors import UsageError
from unetkit.models.geometry import Geometry, same_padding
from unetkit.models.layers import DoubleConv, down_blocks, encode, level_widths, pad_to_multiple

UPSAMPLES = ("transpose", "bilinear")


class UNet(nn.Module):
    def __init__(self, in_channels: int = 3, classes: int = 1, filters: int = 64, depth: int = 4,
                 dropout: float = 0.5, norm: str = "none", upsample: str = "transpose",
                 stem: int = 1) -> None:
        super().__init__()
        if upsample not in UPSAMPLES:
            raise UsageError(f"upsample {upsample!r} is unknown; choose one of "
                             f"{', '.join(UPSAMPLES)}.")
        if depth < 1 or filters < 1 or stem < 1:
            raise UsageError(f"depth ({depth}), filters ({filters}) and stem ({stem}) must be at "
                             "least 1.")
        self.depth, self.stem = depth, stem
        widths = level_widths(filters, depth)
        self.down = down_blocks(in_channels * stem * stem, widths,
                                lambda i, o: DoubleConv(i, o, norm))
        ch = widths[-2]
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.bottleneck = DoubleConv(ch, widths[-1], norm)
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        ch = widths[-1]
        for w in reversed(widths[:-1]):
            if upsample == "transpose":
                self.up.append(nn.ConvTranspose2d(ch, w, 2, stride=2))
            else:
                self.up.append(nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                    nn.Conv2d(ch, w, 1)))
            self.up_conv.append(DoubleConv(2 * w, w, norm))
            ch = w
        self.head = nn.Conv2d(ch, classes * stem * stem, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(x, self.grid)
        if self.stem > 1:
            x = F.pixel_unshuffle(x, self.stem)
        x, skips = encode(x, self.down, self.pool, self.dropout)
        x = self.bottleneck(x)
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips), strict=True):
            x = conv(torch.cat([up(x), skip], dim=1))
        x = self.head(x)
        if self.stem > 1:
            x = F.pixel_shuffle(x, self.stem)
        return x[..., :h, :w]

    @property
    def grid(self) -> int:
        """Input sides must be a multiple of this (smaller inputs are padded up to it)."""
        return 2**self.depth * self.stem

    @property
    def geometry(self) -> Geometry:
        """Pads to its grid inside, so any size works and tiles align on the grid."""
        return same_padding(self.grid)
