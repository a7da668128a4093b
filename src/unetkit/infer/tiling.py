"""Sliding-window inference for images larger than the model's tile (U-Net overlap-tile).

Tiles are cut with mirrored borders, run through the model a batch at a time and blended
with a Gaussian weight (sigma = tile/8, as in nnU-Net) so tile seams, where the model sees
the least context, count the least. Memory stays at one batch of tiles, one band of rows
being blended and the K×H×W result: tiles are gathered by index from the image, never
stacked for the whole image, and the weight sum is separable (two 1D arrays).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from unetkit.errors import UnetkitError, UsageError
from unetkit.progress import progress

PredictFn = Callable[[torch.Tensor], Any]

PROGRESS_MIN_BATCHES = 50  # images needing this many tile batches show progress


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


def tile_count(h: int, w: int, tile: int, overlap: float = 0.25, align: int = 1,
               margin: int = 0) -> int:
    """How many tiles `sliding_window` runs over an h×w image (the work, for the bench)."""
    out = tile - 2 * margin
    return len(_positions(h, out, overlap, align)) * len(_positions(w, out, overlap, align))


def gaussian_axis(n: int) -> torch.Tensor:
    """A length-n float64 Gaussian with sigma = n/8, peak 1, never below 1e-4.

    With sigma = n/8 a tile edge sits at exp(-8) ~ 3e-4 for any n, so the floor only guards
    degenerate sizes; a 2D corner (the product of two axes) stays far above float32 underflow.
    """
    x = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    g = torch.exp(-0.5 * (x / max(n / 8, 1e-6)) ** 2)
    return (g / g.max()).clamp_min(1e-4)


def gaussian_weight(size: tuple[int, int]) -> torch.Tensor:
    """A size[0]×size[1] float32 Gaussian, the outer product of two `gaussian_axis`."""
    return (gaussian_axis(size[0])[:, None] * gaussian_axis(size[1])[None, :]).to(torch.float32)


def _axis_weight_sum(starts: list[int], out_tile: int, length: int) -> torch.Tensor:
    """Sum over tile starts of the 1D weight, clipped to 0..length (float64)."""
    g = gaussian_axis(out_tile)
    total = torch.zeros(length, dtype=torch.float64)
    for s in starts:
        a, b = max(s, 0), min(s + out_tile, length)
        total[a:b] += g[a - s:b - s]
    return total


class _RowBand:
    """Blends tiles into a band of `rows` rows and hands finished rows to `write`.

    Tiles arrive in row-major order with non-decreasing starts, so once a tile row starting
    at y begins, no later tile touches rows above y: those rows are divided by their weight
    sum and handed on as `write(first_row, K×n×W float32)`, top to bottom. Memory is one
    band (K × tile height × W float32), not K × H × W.
    """

    def __init__(self, channels: int, height: int, rows: int, wsum_y: torch.Tensor,
                 wsum_x: torch.Tensor, write: Callable[[int, torch.Tensor], None]) -> None:
        self.height, self.wsum_y, self.wsum_x, self.write = height, wsum_y, wsum_x, write
        self.buf = torch.zeros((channels, rows, wsum_x.shape[0]), dtype=torch.float32,
                               device=wsum_x.device)
        self.base = 0  # absolute row of buf[:, 0]

    def advance(self, y: int) -> None:
        """Finish every row above `y` and slide the band down to start there."""
        y = min(max(y, self.base), self.height)
        done = y - self.base
        if done <= 0:
            return
        self._write(done)
        rows = self.buf.shape[1]
        if done < rows:
            self.buf[:, :rows - done] = self.buf[:, done:].clone()
        self.buf[:, max(rows - done, 0):] = 0
        self.base = y

    def add(self, tile: torch.Tensor, y0: int, x0: int) -> None:
        r = y0 - self.base
        self.buf[:, r:r + tile.shape[1], x0:x0 + tile.shape[2]] += tile

    def finish(self) -> None:
        self._write(min(self.buf.shape[1], self.height - self.base))

    def _write(self, n: int) -> None:
        a = self.base
        self.write(a, self.buf[:, :n] / self.wsum_y[None, a:a + n, None]
                   / self.wsum_x[None, None, :])


def _check(image: torch.Tensor, th: int, tw: int, margin: int, overlap: float,
           batch_size: int) -> None:
    if image.ndim != 3:
        raise UnetkitError(f"Tiled prediction needs a C×H×W image, not shape "
                           f"{tuple(image.shape)}.")
    if margin < 0:
        raise UsageError(f"The model's output margin must be 0 or more, not {margin}.")
    if th - 2 * margin < 1 or tw - 2 * margin < 1:
        raise UsageError(f"--tile {th}x{tw} leaves no output with a margin of {margin} pixels "
                         f"per side; use a tile larger than {2 * margin}.")
    if not 0 <= overlap < 1:
        raise UsageError(f"--overlap must be a fraction in [0, 1), not {overlap}.")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {batch_size}.")
    if image.shape[1] < 1 or image.shape[2] < 1:
        raise UnetkitError(f"Tiled prediction got an empty image of shape {tuple(image.shape)}.")


def _predict_tiles(predict_fn: PredictFn, image: torch.Tensor, chunk: list[tuple[int, int]],
                   tile: tuple[int, int], margin: int) -> torch.Tensor:
    """float32 B×K×oh×ow output of the tiles at `chunk`'s origins (mirror-padded reads),
    checked against the tile's output size."""
    (th, tw), (_, h, w) = tile, image.shape
    oh, ow = th - 2 * margin, tw - 2 * margin
    batch = torch.stack([
        image[:, _mirror_index(y - margin, th, h)][:, :, _mirror_index(x - margin, tw, w)]
        for y, x in chunk])
    out = predict_fn(batch)
    if isinstance(out, np.ndarray):
        out = torch.from_numpy(out)
    out = out.to(device=image.device, dtype=torch.float32)
    if out.ndim != 4 or out.shape[0] != len(chunk) or tuple(out.shape[2:]) != (oh, ow):
        raise UsageError(
            f"The model returned shape {tuple(out.shape)} for {len(chunk)} tiles of "
            f"{th}x{tw}; expected {len(chunk)}×K×{oh}×{ow}: check --tile.")
    return out


def sliding_window(predict_fn: PredictFn, image: torch.Tensor, tile: tuple[int, int],
                   overlap: float = 0.25, batch_size: int = 4, out_channels: int | None = None,
                   margin: int = 0, align: int = 1, out_dtype: torch.dtype = torch.float32,
                   sink: Callable[[int, torch.Tensor], None] | None = None
                   ) -> torch.Tensor | None:
    """Predict a C×H×W image tile by tile and return the blended K×H×W output.

    `predict_fn` maps a B×C×th×tw batch (tile = (th, tw)) to B×K×oh×ow logits or
    probabilities (a tensor or numpy array), where oh = th - 2*margin: `margin` is for
    valid-padding models (572 in, 388 out: margin 92). The image is mirror-padded so every
    pixel is predicted with full context; an image smaller than the tile is one padded tile.
    Output tiles are placed with at least `overlap` (a fraction) in common and blended with a
    Gaussian weight. `align` puts tile starts on multiples of it (see _positions; pass
    2^depth for a U-Net so tiled and whole-image predictions agree). Blending is float32;
    `out_dtype` (e.g. float16 for huge multi-class images) is only the storage of the result.
    With `sink`, nothing is returned: `sink(first_row, rows)` gets the blended rows (K×n×W
    float32) top to bottom as they are finished, so a caller that needs only a mask never
    holds the K×H×W map.
    Runs under torch.no_grad on the image's device; many tiles show progress (rate, ETA).
    """
    th, tw = (int(t) for t in tile)
    _check(image, th, tw, margin, overlap, batch_size)
    oh, ow = th - 2 * margin, tw - 2 * margin
    _, h, w = image.shape
    device = image.device
    weight = gaussian_weight((oh, ow)).to(device)
    ys, xs = _positions(h, oh, overlap, align), _positions(w, ow, overlap, align)
    origins = [(y, x) for y in ys for x in xs]
    # the weight is separable and the tiles form a grid, so the per-pixel weight sum is the
    # outer product of two 1D sums: no H×W weight-sum image (it would double the memory)
    wsum_y = _axis_weight_sum(ys, oh, h).to(device=device, dtype=torch.float32)
    wsum_x = _axis_weight_sum(xs, ow, w).to(device=device, dtype=torch.float32)
    result: torch.Tensor | None = None
    band: _RowBand | None = None

    def start(channels: int) -> _RowBand:
        nonlocal result
        if sink is not None:
            return _RowBand(channels, h, oh, wsum_y, wsum_x, sink)
        out = result = torch.empty((channels, h, w), dtype=out_dtype, device=device)

        def store(first: int, rows: torch.Tensor) -> None:
            out[:, first:first + rows.shape[1]] = rows.to(out_dtype)

        return _RowBand(channels, h, oh, wsum_y, wsum_x, store)

    if out_channels is not None:
        band = start(out_channels)

    starts = range(0, len(origins), batch_size)
    with torch.no_grad():
        for first in progress(starts, total=len(starts), desc="Tiles", unit="batch",
                              disable=len(starts) < PROGRESS_MIN_BATCHES):
            chunk = origins[first:first + batch_size]
            out = _predict_tiles(predict_fn, image, chunk, (th, tw), margin)
            if band is None:
                band = start(out.shape[1])
            elif out.shape[1] != band.buf.shape[0]:
                raise UsageError(f"The model returned {out.shape[1]} channels, but "
                                 f"{band.buf.shape[0]} were expected.")
            for k, (y, x) in enumerate(chunk):
                # clip tiles that stick out of a small image (centred, negative start)
                y0, x0 = max(y, 0), max(x, 0)
                y1, x1 = min(y + oh, h), min(x + ow, w)
                band.advance(y0)
                tile_w = weight[y0 - y:y1 - y, x0 - x:x1 - x]
                band.add(out[k, :, y0 - y:y1 - y, x0 - x:x1 - x] * tile_w, y0, x0)
            del out
    assert band is not None  # at least one tile always runs
    band.finish()
    return result
