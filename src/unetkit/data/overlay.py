"""Colour masks and overlays: class colours, mask blended over the image, a legend of names."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Background transparent-black; then distinct colours (tab10-like), then a seeded spread.
_BASE = [(0, 0, 0), (255, 64, 64), (64, 160, 255), (255, 200, 0), (80, 220, 120),
         (200, 80, 255), (255, 128, 0), (0, 220, 220), (255, 105, 180), (160, 160, 160),
         (128, 128, 0), (0, 128, 128)]


def palette(num_classes: int) -> np.ndarray:
    """num_classes x 3 uint8 colours; the ignore value 255 maps to white via palette_lut."""
    rng = np.random.default_rng(7)
    extra = [tuple(int(v) for v in rng.integers(40, 256, 3))
             for _ in range(max(0, num_classes - len(_BASE)))]
    return np.asarray((_BASE + extra)[:num_classes], dtype=np.uint8)


def colorize(mask: np.ndarray, num_classes: int) -> np.ndarray:
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:num_classes] = palette(num_classes)
    lut[255] = (255, 255, 255)
    return lut[mask]


def to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


def overlay(image: np.ndarray, mask: np.ndarray, class_names: list[str],
            alpha: float = 0.45, legend: bool = True) -> np.ndarray:
    """Blend class colours over the image (background untouched) and draw a legend.

    Works in bands of rows and draws the legend on a small corner patch, so an overlay of a
    huge image costs one uint8 copy of it, not several float32 ones.
    """
    out = to_rgb(image).copy()
    lut = palette(len(class_names)).astype(np.float32)
    for r in range(0, out.shape[0], ROWS_PER_BAND):
        rows = out[r:r + ROWS_PER_BAND]
        m = mask[r:r + ROWS_PER_BAND]
        fg = m > 0
        if fg.any():
            blended = (1 - alpha) * rows[fg].astype(np.float32) + alpha * lut[m[fg]]
            rows[fg] = np.round(blended).astype(np.uint8)
    if legend:
        _draw_legend(out, class_names)
    return out


ROWS_PER_BAND = 512


def _draw_legend(rgb: np.ndarray, class_names: list[str]) -> None:
    """A swatch and name per foreground class, drawn in place in the top-left corner."""
    font = ImageFont.load_default()
    cols = palette(len(class_names))
    h = min(rgb.shape[0], 8 + 16 * max(len(class_names) - 1, 0))
    w = min(rgb.shape[1], 24 + 8 * max((len(n) for n in class_names), default=0))
    corner = Image.fromarray(np.ascontiguousarray(rgb[:h, :w]))
    draw = ImageDraw.Draw(corner)
    y = 4
    for idx, name in enumerate(class_names):
        if idx == 0:
            continue
        draw.rectangle([4, y, 16, y + 12], fill=tuple(int(c) for c in cols[idx]), outline=(0, 0, 0))
        draw.text((20, y), name, fill=(255, 255, 255), font=font, stroke_width=1,
                  stroke_fill=(0, 0, 0))
        y += 16
    rgb[:h, :w] = np.asarray(corner)
