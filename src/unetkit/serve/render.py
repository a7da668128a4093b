"""Arrays -> the PNGs the page shows: views of an image, masks, probabilities, overlays."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from unetkit.data.overlay import overlay, to_rgb
from unetkit.errors import UnetkitError

THUMB_SIDE = 160


def png(array: np.ndarray) -> bytes:
    """8-bit grey, RGB(A) or 16-bit grey array -> PNG bytes (fast compression)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def displayable(image: np.ndarray) -> np.ndarray:
    """HxWxC uint8 -> grey (HxW) or RGB: what a browser shows of any channel count."""
    if image.ndim == 2:
        return image
    if image.shape[-1] in (1, 2):
        return image[..., 0]
    return to_rgb(image)


def downscaled(image: np.ndarray, max_side: int) -> np.ndarray:
    """The image shrunk (box filter) so its longest side is at most `max_side` (0: as is)."""
    h, w = image.shape[:2]
    if max_side <= 0 or max(h, w) <= max_side:
        return image
    f = max_side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BOX))


def crop(image: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
    """A full-resolution window of the image; one that misses the image is one sentence."""
    height, width = image.shape[:2]
    if w < 1 or h < 1 or x < 0 or y < 0 or x >= width or y >= height:
        raise UnetkitError(f"The crop x={x}, y={y}, w={w}, h={h} lies outside the "
                           f"{width}x{height} image.")
    return image[y:min(height, y + h), x:min(width, x + w)]


def thumbnail(image: np.ndarray) -> bytes:
    return png(downscaled(displayable(image), THUMB_SIDE))


def overlay_png(image: np.ndarray, mask: np.ndarray, class_names: list[str]) -> bytes:
    return png(overlay(image, mask, class_names))
