"""Training-time pictures: the TensorBoard input | truth | prediction grid, the LR curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from unetkit.data.overlay import colorize
from unetkit.plotting import plt, save_figure


def grid_tensor(images: torch.Tensor, truth: torch.Tensor, pred: torch.Tensor,
                num_classes: int) -> torch.Tensor:
    """3 x H x (3W) x N uint8 grid for TensorBoard: normalised input | truth | prediction."""
    rows = []
    for img, t, p in zip(images, truth, pred, strict=True):
        x = img[:3] if img.shape[0] >= 3 else img[:1].repeat(3, 1, 1)
        x = (x - x.min()) / (x.max() - x.min() + 1e-6)
        x = (x * 255).byte().permute(1, 2, 0).numpy()
        t_rgb = colorize(t.numpy().astype(np.uint8), num_classes)
        p_rgb = colorize(p.numpy().astype(np.uint8), num_classes)
        if t_rgb.shape[:2] != x.shape[:2]:  # valid-padding: centre-crop input to the output
            dh, dw = (x.shape[0] - t_rgb.shape[0]) // 2, (x.shape[1] - t_rgb.shape[1]) // 2
            x = x[dh:dh + t_rgb.shape[0], dw:dw + t_rgb.shape[1]]
        rows.append(np.concatenate([x, t_rgb, p_rgb], axis=1))
    grid = np.concatenate(rows, axis=0)
    return torch.from_numpy(grid).permute(2, 0, 1)


def plot_lr_curve(lrs: list[float], losses: list[float], suggestion: float, path: Path) -> None:
    """Loss against learning rate (log scale) with the suggested rate marked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lrs, losses)
    ax.axvline(suggestion, color="red", linestyle="--", label=f"suggested lr {suggestion:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    ax.set_title("learning-rate range test")
    ax.legend()
    ax.grid(alpha=0.3)
    save_figure(fig, path)
