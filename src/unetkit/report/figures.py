"""Pictures of a finished run: training curves and input | truth | prediction rows."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from unetkit.data.overlay import colorize, overlay, to_rgb
from unetkit.plotting import plt, save_figure
from unetkit.scoring import class_scores


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


def never_predicted_flags(confusion: list[list[int]]) -> list[bool]:
    """Per class: present in the truth (its row) but predicted on no pixel (its column)."""
    conf = np.asarray(confusion)
    return [bool(conf[:, j].sum() == 0 and conf[j].sum() > 0) for j in range(conf.shape[0])]


def plot_confusion(confusion: list[list[int]], class_names: list[str], path: Path) -> None:
    """Row-normalised confusion matrix (each true class's pixels: where they went), with the
    classes the model never predicts marked in red, so a missing rare class shows at once."""
    conf = np.asarray(confusion, dtype=np.float64)
    k = conf.shape[0]
    share = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    never = never_predicted_flags(confusion)
    side = max(4.0, 0.55 * k + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if k <= 25:
        for i in range(k):
            for j in range(k):
                if share[i, j] >= 0.005:
                    ax.text(j, i, f"{share[i, j]:.0%}", ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), class_names, rotation=60, ha="right", fontsize=8)
    iou, _ = class_scores(conf)  # the report table's IoU, empty-mask rule included
    ax.set_yticks(range(k), [f"{n} (never predicted)" if never[i] else f"{n}  IoU {iou[i]:.2f}"
                             for i, n in enumerate(class_names)], fontsize=8)
    for tick, flagged in zip(ax.get_yticklabels(), never, strict=True):
        if flagged:
            tick.set_color("red")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (row: share of its pixels)")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title("confusion matrix (pooled pixels)")
    save_figure(fig, path)
