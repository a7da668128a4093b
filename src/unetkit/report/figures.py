"""Training curves and input | truth | prediction grids, as PNGs and TensorBoard images."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from unetkit.infer.overlay import colorize, overlay, to_rgb  # noqa: E402
from unetkit.io_utils import atomic_path  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_curves(metrics_csv: Path, path: Path) -> None:
    """Loss and validation metrics per epoch from metrics.csv."""
    with open(metrics_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    epochs = [int(r["epoch"]) for r in rows]

    def col(name: str) -> list[float]:
        return [float(r[name]) if r.get(name) not in (None, "") else np.nan for r in rows]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name in ("train/loss", "val/loss"):
        if name in rows[0]:
            ax1.plot(epochs, col(name), marker=".", label=name)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.set_yscale("log")
    ax1.legend()
    ax1.grid(alpha=0.3)
    for name in ("val/mean_dice", "val/mean_iou", "val/dice", "val/pixel_accuracy",
                 "train/mean_dice"):
        if name in rows[0]:
            ax2.plot(epochs, col(name), marker=".", label=name)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("score")
    ax2.legend()
    ax2.grid(alpha=0.3)
    fig.suptitle("unetkit training curves")
    _save(fig, path)


def plot_predictions(items: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float]],
                     class_names: list[str], path: Path) -> None:
    """Rows of input | truth | prediction overlay, titled with each image's Dice."""
    n = len(items)
    if n == 0:
        return
    fig, axes = plt.subplots(n, 3, figsize=(10, 3.3 * n), squeeze=False)
    for row, (name, image, truth, pred, dice) in zip(axes, items, strict=True):
        row[0].imshow(to_rgb(image))
        row[0].set_title(f"{name}", fontsize=9)
        row[1].imshow(colorize(truth, len(class_names)))
        row[1].set_title("truth", fontsize=9)
        row[2].imshow(overlay(image, pred, class_names, legend=False))
        row[2].set_title(f"prediction (Dice {dice:.3f})", fontsize=9)
        for ax in row:
            ax.axis("off")
    _save(fig, path)


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
    _save(fig, path)
