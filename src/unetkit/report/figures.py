"""Pictures of a finished run: training curves and input | truth | prediction rows."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from unetkit.data.overlay import colorize, overlay, to_rgb
from unetkit.plotting import plt, save_figure


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
    save_figure(fig, path)


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
    save_figure(fig, path)
