"""Helpers for the studio tests: tiny data sets, a tiny model artifact, a client.

Import as `from serve_fixtures import ...` from tests/serve.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SIZE = (32, 40)  # H, W of every test image


def blob(i: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A 0/1 mask with one rectangle that moves with i."""
    mask = np.zeros(size, np.uint8)
    mask[4 + i % 5:16 + i % 5, 6 + 2 * (i % 4):24 + 2 * (i % 4)] = 1
    return mask


def make_data(root: Path, count: int = 6, labelled: int = 3, flat: bool = False,
              foreground: int = 255) -> Path:
    """`count` RGB images (bright where the blob is), the first `labelled` with binary masks
    (0/`foreground`) named <stem>_mask.png; images/ + masks/, or flat with masks/ inside."""
    images = root if flat else root / "images"
    images.mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        mask = blob(i)
        pixels = (40 + 160 * mask[..., None] + rng.integers(0, 40, (*SIZE, 3))).astype(np.uint8)
        Image.fromarray(pixels).save(images / f"im{i}.png")
        if i < labelled:
            Image.fromarray(mask * foreground).save(root / "masks" / f"im{i}_mask.png")
    return root


def make_model(out: Path, classes: int = 1, seed: int = 0) -> Path:
    """A tiny untrained U-Net artifact (binary, or `classes` classes) in out/model."""
    import unetkit

    torch.manual_seed(seed)
    model = unetkit.build_model("unet", in_channels=3, classes=classes, filters=4, depth=2,
                                norm="batch", dropout=0.0)
    names = ["background", "foreground"] if classes == 1 else \
        [f"c{i}" for i in range(classes)]
    unetkit.save_model(model, out / "model", meta={"class_names": names,
                                                   "binary": classes == 1})
    return out


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def read_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def client(data: Path, model: Path | None = None, **settings):
    """A TestClient on a studio over `data` (and `model`)."""
    from fastapi.testclient import TestClient

    from unetkit.serve.app import create_app
    from unetkit.serve.state import Settings, Studio

    studio = Studio.open(data, model, Settings(**settings))
    return TestClient(create_app(studio))
