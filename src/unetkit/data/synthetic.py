"""Seeded synthetic segmentation data: shapes over textured, noisy, unevenly lit backgrounds.

Classes: 0 background, 1 ellipses, 2 polygons, 3 thin curves. The masks are exact because
image and mask are drawn from the same geometry. `write_folder` puts a set on disk in the
`folder` layout so the demo goes through the same loading code as real data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

CLASS_NAMES = ["background", "ellipse", "polygon", "curve"]
# Per-class base colour (RGB, 0..1); grey images use the mean. Distinct but not trivially so:
# texture and illumination overlap the ranges.
_CLASS_COLOURS = np.array([[0.0, 0.0, 0.0], [0.85, 0.55, 0.35], [0.25, 0.45, 0.85],
                           [0.9, 0.9, 0.3]], dtype=np.float32)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    texture = ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma=max(1.0, min(h, w) / 32))
    texture = texture / (np.abs(texture).max() + 1e-6)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    light = 0.4 + 0.1 * ramp + 0.06 * texture
    return light.astype(np.float32)


def _draw_mask(rng: np.random.Generator, h: int, w: int, objects: int) -> np.ndarray:
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    scale = min(h, w)
    for _ in range(objects):
        cls = int(rng.integers(1, 4))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.08, 0.2) * scale
        if cls == 1:
            rx, ry = r, r * rng.uniform(0.5, 1.0)
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=1)
        elif cls == 2:
            n = int(rng.integers(3, 7))
            angles = np.sort(rng.uniform(0, 2 * np.pi, n))
            pts = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in angles]
            draw.polygon(pts, fill=2)
        else:
            n = 5
            pts = [(cx, cy)]
            heading = rng.uniform(0, 2 * np.pi)
            for _ in range(n):
                heading += rng.uniform(-0.6, 0.6)
                cx += np.cos(heading) * r * 0.6
                cy += np.sin(heading) * r * 0.6
                pts.append((cx, cy))
            draw.line(pts, fill=3, width=max(3, int(scale / 24)))
    return np.asarray(canvas, dtype=np.uint8)


def make_sample(seed: int, size: tuple[int, int] = (96, 96), channels: int = 3,
                objects: tuple[int, int] = (3, 7)) -> tuple[np.ndarray, np.ndarray]:
    """One (image HxWxC uint8, mask HxW uint8 class index) pair, fully determined by seed."""
    rng = np.random.default_rng(seed)
    h, w = size
    mask = _draw_mask(rng, h, w, int(rng.integers(objects[0], objects[1] + 1)))
    base = _background(rng, h, w)[..., None] * np.ones(3, dtype=np.float32)
    colours = _CLASS_COLOURS[mask]
    shade = 0.85 + 0.15 * rng.uniform(size=(h, w, 1)).astype(np.float32)
    image = np.where(mask[..., None] > 0, 0.5 * base + 0.6 * colours * shade, base)
    image += rng.normal(0, 0.05, size=image.shape).astype(np.float32)
    if channels == 1:
        image = image.mean(axis=-1, keepdims=True)
    elif channels > 3:
        extra = image.mean(axis=-1, keepdims=True).repeat(channels - 3, axis=-1)
        image = np.concatenate([image, extra], axis=-1)
    return np.clip(image * 255, 0, 255).astype(np.uint8), mask


def write_folder(root: str | Path, count: int = 64, size: tuple[int, int] = (96, 96),
                 channels: int = 3, seed: int = 0) -> Path:
    """Write `count` pairs as root/images/NNNN.png and root/masks/NNNN.png (class index),
    and the class names as root/classes.txt."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    for i in range(count):
        image, mask = make_sample(seed * 100_003 + i, size, channels)
        img = image[..., 0] if channels == 1 else image
        Image.fromarray(img).save(root / "images" / f"{i:04d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:04d}.png")
    return root
