"""3D U-Net (Cicek et al., 2016) for volumes B x C x D x H x W.

Same shape as the 2D U-Net: per level two 3x3x3 'same' convolutions with normalisation and
ReLU, 2x2x2 max-pooling, filters doubling per level, 2x2x2 stride-2 transposed convolutions
and a 1x1x1 output convolution. Volumes of any size work: they are padded up to a multiple
of 2**depth inside and the logits cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unetkit.errors import UsageError
from unetkit.models.geometry import Geometry, same_padding
from unetkit.models.layers import down_blocks, encode, level_widths, norm_layer


class DoubleConv3d(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, norm: str) -> None:
        bias = norm == "none"
        super().__init__(
            nn.Conv3d(in_ch, out_ch, 3, padding=1, bias=bias), norm_layer(norm, out_ch, dims=3),
            nn.ReLU(inplace=True),
            nn.Conv3d(out_ch, out_ch, 3, padding=1, bias=bias), norm_layer(norm, out_ch, dims=3),
            nn.ReLU(inplace=True),
        )


def pad_volume(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Pad D, H and W up to a multiple (mirrored where possible)."""
    d, h, w = x.shape[-3:]
    pads = [(-s) % multiple for s in (d, h, w)]
    if not any(pads):
        return x, (d, h, w)
    mode = "reflect" if all(p < s for p, s in zip(pads, (d, h, w), strict=True)) else "replicate"
    return F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]), mode=mode), (d, h, w)


class UNet3D(nn.Module):
    def __init__(self, in_channels: int = 1, classes: int = 1, filters: int = 32, depth: int = 3,
                 norm: str = "batch") -> None:
        super().__init__()
        if depth < 1 or filters < 1:
            raise UsageError(f"depth ({depth}) and filters ({filters}) must be at least 1.")
        self.depth = depth
        widths = level_widths(filters, depth)
        self.down = down_blocks(in_channels, widths, lambda i, o: DoubleConv3d(i, o, norm))
        ch = widths[-2]
        self.pool = nn.MaxPool3d(2)
        self.bottleneck = DoubleConv3d(ch, widths[-1], norm)
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        ch = widths[-1]
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose3d(ch, w, 2, stride=2))
            self.up_conv.append(DoubleConv3d(2 * w, w, norm))
            ch = w
        self.head = nn.Conv3d(ch, classes, 1)

    @property
    def geometry(self) -> Geometry:
        """Pads depth, height and width to 2^depth inside, so any volume size works."""
        return same_padding(2**self.depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise UsageError(f"unet3d expects B x C x D x H x W volumes, got shape "
                             f"{tuple(x.shape)}.")
        x, (d, h, w) = pad_volume(x, self.geometry.pad_multiple)
        x, skips = encode(x, self.down, self.pool)
        x = self.bottleneck(x)
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips), strict=True):
            x = conv(torch.cat([up(x), skip], dim=1))
        return self.head(x)[..., :d, :h, :w]
