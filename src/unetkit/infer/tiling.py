"""Sliding-window inference for images larger than the model's tile (U-Net overlap-tile).

Tiles are cut with mirrored borders, run through the model a batch at a time and blended
with a Gaussian weight (sigma = tile/8, as in nnU-Net) so tile seams, where the model sees
the least context, count the least. Memory stays at one batch of tiles plus a K×H×W float32
accumulator: tiles are gathered by index from the image, never stacked for the whole image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from unetkit.errors import UnetkitError, UsageError

PredictFn = Callable[[torch.Tensor], Any]


def _mirror_index(start: int, size: int, length: int) -> slice | torch.Tensor:
    """Indices start..start+size-1 into an axis of `length`, mirrored past both ends.

    Reflect mode (edge pixel not repeated), repeated as often as needed, so a pad larger
    than the image still mirrors; a 1-pixel axis is replicated. A plain slice when inside.
    """
    if start >= 0 and start + size <= length:
        return slice(start, start + size)
    idx = torch.arange(start, start + size)
    if length == 1:
        return torch.zeros(size, dtype=torch.long)
    period = 2 * (length - 1)
    idx = torch.remainder(idx, period)
    return torch.where(idx >= length, period - idx, idx)


def _positions(length: int, out_tile: int, overlap: float, align: int = 1) -> list[int]:
    """Output-tile start positions covering 0..length, evenly spaced, step <= tile*(1-overlap).

    An axis shorter than the tile gets one tile centred on it (a negative start). With
    `align` > 1 every start is a multiple of `align` (the model's pooling grid: a U-Net of
    depth d is only shift-equivariant by multiples of 2^d, so aligned tiles see the pixels
    as the whole image does); the last tile may then end up to align-1 pixels past the
    image, over mirrored pixels. An `align` larger than the tile is ignored.
    """
    align = max(1, int(align))
    if align > out_tile:  # aligned starts would leave holes between tiles
        align = 1
    if length <= out_tile:
        return [-((out_tile - length) // 2 // align * align)]
    step = max(1, math.floor(out_tile * (1 - overlap)))
    if align == 1:
        count = math.ceil((length - out_tile) / step) + 1
        return [round(i * (length - out_tile) / (count - 1)) for i in range(count)]
    units = math.ceil((length - out_tile) / align)  # the last start, in multiples of align
    step_units = max(1, step // align)
    count = math.ceil(units / step_units) + 1
    return [round(i * units / (count - 1)) * align for i in range(count)]


def gaussian_weight(size: tuple[int, int]) -> torch.Tensor:
    """A size[0]×size[1] float32 Gaussian with sigma = size/8 per axis, peak 1, never 0."""
    axes = []
    for n in size:
        x = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
        sigma = max(n / 8, 1e-6)
        axes.append(torch.exp(-0.5 * (x / sigma) ** 2))
    weight = axes[0][:, None] * axes[1][None, :]
    weight = weight / weight.max()
    return weight.clamp_min(1e-6).to(torch.float32)  # corners of big tiles would underflow


def sliding_window(predict_fn: PredictFn, image: torch.Tensor, tile: tuple[int, int],
                   overlap: float = 0.25, batch_size: int = 4, out_channels: int | None = None,
                   margin: int = 0, align: int = 1) -> torch.Tensor:
    """Predict a C×H×W image tile by tile and return the blended K×H×W float32 output.

    `predict_fn` maps a B×C×th×tw batch (tile = (th, tw)) to B×K×oh×ow logits or
    probabilities (a tensor or numpy array), where oh = th - 2*margin: `margin` is for
    valid-padding models (572 in, 388 out: margin 92). The image is mirror-padded so every
    pixel is predicted with full context; an image smaller than the tile is one padded tile.
    Output tiles are placed with at least `overlap` (a fraction) in common and blended with a
    Gaussian weight. `align` puts tile starts on multiples of it (see _positions; pass
    2^depth for a U-Net so tiled and whole-image predictions agree). Runs under
    torch.no_grad on the image's device.
    """
    if image.ndim != 3:
        raise UnetkitError(f"Tiled prediction needs a C×H×W image, not shape "
                           f"{tuple(image.shape)}.")
    th, tw = (int(t) for t in tile)
    if margin < 0:
        raise UsageError(f"--margin must be 0 or more, not {margin}.")
    oh, ow = th - 2 * margin, tw - 2 * margin
    if oh < 1 or ow < 1:
        raise UsageError(f"--tile {th}x{tw} leaves no output with a margin of {margin} pixels "
                         f"per side; use a tile larger than {2 * margin}.")
    if not 0 <= overlap < 1:
        raise UsageError(f"--overlap must be a fraction in [0, 1), not {overlap}.")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {batch_size}.")
    _, h, w = image.shape
    if h < 1 or w < 1:
        raise UnetkitError(f"Tiled prediction got an empty image of shape {tuple(image.shape)}.")
    device = image.device
    weight = gaussian_weight((oh, ow)).to(device)
    ys, xs = _positions(h, oh, overlap, align), _positions(w, ow, overlap, align)
    origins = [(y, x) for y in ys for x in xs]
    acc: torch.Tensor | None = None
    if out_channels is not None:
        acc = torch.zeros((out_channels, h, w), dtype=torch.float32, device=device)
    wsum = torch.zeros((h, w), dtype=torch.float32, device=device)

    with torch.no_grad():
        for first in range(0, len(origins), batch_size):
            chunk = origins[first:first + batch_size]
            batch = torch.stack([
                image[:, _mirror_index(y - margin, th, h)][:, :, _mirror_index(x - margin, tw, w)]
                for y, x in chunk])
            out = predict_fn(batch)
            if isinstance(out, np.ndarray):
                out = torch.from_numpy(out)
            out = out.to(device=device, dtype=torch.float32)
            if out.ndim != 4 or out.shape[0] != len(chunk) or tuple(out.shape[2:]) != (oh, ow):
                raise UsageError(
                    f"The model returned shape {tuple(out.shape)} for {len(chunk)} tiles of "
                    f"{th}x{tw}; expected {len(chunk)}×K×{oh}×{ow}: check --tile and --margin.")
            if acc is None:
                acc = torch.zeros((out.shape[1], h, w), dtype=torch.float32, device=device)
            elif out.shape[1] != acc.shape[0]:
                raise UsageError(f"The model returned {out.shape[1]} channels, but "
                                 f"{acc.shape[0]} were expected.")
            for k, (y, x) in enumerate(chunk):
                # clip tiles that stick out of a small image (centred, negative start)
                y0, x0 = max(y, 0), max(x, 0)
                y1, x1 = min(y + oh, h), min(x + ow, w)
                tile_w = weight[y0 - y:y1 - y, x0 - x:x1 - x]
                acc[:, y0:y1, x0:x1] += out[k, :, y0 - y:y1 - y, x0 - x:x1 - x] * tile_w
                wsum[y0:y1, x0:x1] += tile_w
            del out, batch
    assert acc is not None  # at least one tile always runs
    return acc.div_(wsum)
