"""Tiny hand-made data sets with known statistics, and recorded (fake) measurements.

Import as `from plan_fixtures import ...` from tests/plan.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from unetkit.plan.probe import Machine, Measurements, SpeedSample


def write_pairs(root: Path, masks: list[np.ndarray], seed: int = 0) -> Path:
    """root/images/NN.png (grey noise plus the mask) and root/masks/NN.png (0/255)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i, m in enumerate(masks):
        img = np.clip(60 + 120 * m + rng.normal(0, 10, m.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"{i:02d}.png")
        Image.fromarray((m > 0).astype(np.uint8) * 255).save(root / "masks" / f"{i:02d}.png")
    return root


def disc_masks(count: int = 4, size: int = 64, radius: int = 6) -> list[np.ndarray]:
    """Two non-touching discs per image (the last image empty when count > 2)."""
    yy, xx = np.mgrid[0:size, 0:size]
    masks = []
    for i in range(count):
        m = np.zeros((size, size), np.uint8)
        if i < count - 1 or count <= 2:
            for cy, cx in ((16 + i, 16), (44, 40 + i)):
                m[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = 1
        masks.append(m)
    return masks


def line_masks(count: int = 4, size: int = 64, width: int = 2) -> list[np.ndarray]:
    """Membrane-like: thin foreground lines (a grid) on background."""
    masks = []
    for i in range(count):
        m = np.zeros((size, size), np.uint8)
        for p in (10 + i, 30 + i, 50):
            m[p:p + width, :] = 1
            m[:, p:p + width] = 1
        masks.append(m)
    return masks


def fake_measurements(step_s: float = 0.5, eval_s: float = 0.1, device_name: str = "test cpu",
                      size: tuple[int, int] = (64, 64), batch: int = 2,
                      step_times: tuple[float, float, float] | None = None) -> Measurements:
    """Recorded speeds for three U-Net widths (8, 16, 32 filters): each doubling 2.5x slower,
    or the training step seconds `step_times` gives for each width."""
    machine = Machine(device="cpu", device_name=device_name, cores=2, threads=2,
                      memory_available_gb=8.0, precision="32", bf16=False, torch="2.x")
    speeds = []
    for k, f in enumerate((8, 16, 32)):
        s = step_times[k] if step_times else step_s * 2.5**k
        speeds.append(SpeedSample(
            key=f"unet-f{f}-d3", model="unet", options={"filters": f, "depth": 3,
                                                        "norm": "batch"},
            size=list(size), batch=batch, step_s=s, train_images_per_s=round(batch / s, 3),
            eval_size=list(size), eval_s_per_image=eval_s * 2.5**k, checkpoint_s=0.01,
            parameters=1000 * f, threads=2))
    return Measurements(machine=machine, size=list(size), batch=batch,
                        loader_s_per_image={"default": 0.005, "strong": 0.02, "weight_maps": 0.01},
                        speeds=speeds,
                        threads_tested={"2": step_s, "1": step_s * 1.3}, threads=2,
                        prepare_s=1.0, probe_s=5.0)


def write_scenes(root: Path, count: int = 4, size: tuple[int, int] = (48, 64),
                 seed: int = 0) -> Path:
    """Street-scene-like RGB images with index masks: sky (0) on top, road (2) below, a
    building (1) on one side and a thin pole (3); classes.txt names them."""
    rng = np.random.default_rng(seed)
    h, w = size
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("sky\nbuilding\nroad\npole\n")
    colours = np.array([[120, 160, 230], [140, 90, 70], [80, 80, 80], [200, 200, 40]])
    for i in range(count):
        m = np.zeros(size, np.uint8)
        horizon = h // 2 + int(rng.integers(-3, 4))
        m[horizon:] = 2
        side = int(rng.integers(0, 2))
        cols = slice(0, w // 3) if side == 0 else slice(w - w // 3, w)
        m[h // 6:horizon, cols] = 1
        x = int(rng.integers(w // 3, 2 * w // 3))
        m[h // 8:horizon + 4, x:x + 2] = 3
        img = np.clip(colours[m] + rng.normal(0, 8, (*size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(m).save(root / "masks" / f"{i:02d}.png")
    return root
