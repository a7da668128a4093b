"""Building blocks shared by the U-Net variants."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unetkit.errors import UsageError

NORMS = ("none", "batch", "group", "instance")


def norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "none":
        return nn.Identity()
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(min(32, channels // 4) or 1, channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    raise UsageError(f"norm {norm!r} is unknown; choose one of {', '.join(NORMS)}.")


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
