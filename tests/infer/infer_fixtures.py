"""Helpers for the inference tests: tiny untrained models with the meta fit writes, images.

Import as `from infer_fixtures import tiny_model` from tests/infer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

MEAN, STD = [0.45, 0.5, 0.55], [0.2, 0.25, 0.3]
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def shared_data(name: str) -> Path:
    """../shared/data/<name>, or skip the test (as tests/conftest.py's shared_data does)."""
    import pytest

    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not present on this machine")
    return path


def fit_meta(channels: int = 3, class_names: list[str] | None = None,
             kind: str = "binary") -> dict:
    """The meta fit writes into an artifact (see train/fit.py), for a folder data set."""
    names = class_names or ["background", "foreground"]
    return {"class_names": names, "binary": len(names) == 2, "ignore_index": None,
            "in_channels": channels,
            "normalization": {"mean": (MEAN * 2)[:channels], "std": (STD * 2)[:channels]},
            "input_size": [32, 32], "scale": 1.0,
            "mask_spec": {"kind": kind, "class_names": names, "ignore_index": None,
                          "value_map": None, "colors": None},
            "data_format": "folder"}


def tiny_model(name: str = "unet", channels: int = 3, classes: int = 1, seed: int = 0,
               **options):
    """An untrained tiny model whose logits straddle 0 (about half the pixels foreground)."""
    import unetkit

    torch.manual_seed(seed)
    opts = {"filters": 4, "depth": 2, **({"norm": "batch"} if name == "unet" else {}), **options}
    model = unetkit.build_model(name, in_channels=channels, classes=classes, **opts).eval()
    names = ["background", "foreground"] if classes == 1 else [f"c{i}" for i in range(classes)]
    model.unetkit_meta = fit_meta(channels, names)
    if name == "unet-valid":
        model.unetkit_meta["input_size"] = [60, 60]  # a size it accepts: 60 in, 20 out
    with torch.no_grad():  # centre the logits on a typical input and spread them (std 4)
        x = torch.randn(1, channels, 44, 60, generator=torch.Generator().manual_seed(seed))
        logits = model(x).flatten(2)[0]
        k = 4.0 / logits.std(-1).clamp_min(1e-6)
        model.head.bias.sub_(logits.median(-1).values).mul_(k)
        model.head.weight.mul_(k.view(-1, 1, 1, 1))
    return model


def write_images(folder: Path, count: int = 3, size: tuple[int, int] = (37, 53),
                 seed: int = 0) -> list[Path]:
    """Smooth random RGB PNGs of an odd size (so padding and cropping are exercised)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        noise = rng.normal(size=(size[0] // 4 + 2, size[1] // 4 + 2, 3))
        img = Image.fromarray(np.uint8(np.clip(noise * 60 + 128, 0, 255)))
        img = img.resize((size[1], size[0]), Image.BILINEAR)
        path = folder / f"img{i}.png"
        img.save(path)
        paths.append(path)
    return paths
