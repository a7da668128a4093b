"""`evaluate`'s calibration report: ECE, reliability data and error capture by uncertainty,
per image into bounded-memory statistics (unetkit.calibration), and the reliability diagram.

The probabilities are the model's own (after its temperature, when fit calibrated it), before
any mask clean-up (--keep-largest, --min-size): calibration is a property of the
probabilities. Pixels whose truth is the ignore value are left out. The uncertainty is the
predictive entropy (unetkit.infer.uncertainty).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetkit.calibration import CalibrationStats, confidence_and_prediction
from unetkit.infer.uncertainty import max_entropy, predictive_entropy
from unetkit.scoring import IGNORE

ROWS_PER_CHUNK = 1024  # row bands: no full-image float64 temporaries for huge images


class ImageCalibration:
    """Adds each image's probabilities and truth to one CalibrationStats."""

    def __init__(self, binary: bool, num_classes: int) -> None:
        self.binary = binary
        self.stats = CalibrationStats(max_uncertainty=max_entropy(num_classes))

    def add(self, probs: np.ndarray, truth: np.ndarray) -> None:
        """`probs` K×H×W (K = 1 for binary models), `truth` H×W class indices."""
        for r in range(0, truth.shape[0], ROWS_PER_CHUNK):
            p, t = probs[:, r:r + ROWS_PER_CHUNK], truth[r:r + ROWS_PER_CHUNK]
            keep = t != IGNORE
            if not keep.any():
                continue
            p = p[:, keep].astype(np.float32)  # K×n, the scored pixels only
            confidence, pred = confidence_and_prediction(p, self.binary)
            entropy = predictive_entropy(torch.from_numpy(p)[..., None], self.binary)
            self.stats.add(confidence, pred == t[keep], entropy.numpy())

    def summary(self, temperature: Any = None) -> dict[str, Any]:
        """The metrics JSON's "calibration" block; `temperature` as the model records it
        (None: the model was never calibrated)."""
        return {**self.stats.summary(), "temperature": temperature}


def plot_reliability(calibration: dict[str, Any], path: Path) -> None:
    """Accuracy per confidence bin against the diagonal (ECE in the title), beside the
    confidence histogram. Nothing is written when no pixel was scored."""
    from unetkit.plotting import plt, save_figure

    rows = calibration.get("bins") or []
    if not rows or calibration.get("ece") is None:
        return
    width = rows[0]["upper"] - rows[0]["lower"]
    lefts = [r["lower"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    ax1.bar(lefts, [r["accuracy"] or 0.0 for r in rows], width=width, align="edge",
            edgecolor="black", label="accuracy")
    ax1.bar(lefts, [(r["confidence"] or 0.0) - (r["accuracy"] or 0.0) for r in rows],
            bottom=[r["accuracy"] or 0.0 for r in rows], width=width, align="edge",
            color="tab:red", alpha=0.3, label="gap to confidence")
    ax1.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax1.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
    temperature = calibration.get("temperature")
    scaled = f", temperature {temperature:.2f}" if temperature else ""
    ax1.set_title(f"Reliability (ECE {calibration['ece']:.4f}{scaled})")
    ax1.legend(loc="upper left", fontsize=8)
    ax2.bar(lefts, [r["count"] for r in rows], width=width, align="edge", edgecolor="black")
    ax2.set(xlim=(0, 1), xlabel="confidence", ylabel="pixels (log scale)", yscale="log",
            title=f"Confidence histogram ({calibration.get('pixels', 0)} pixels)")
    ax2.set_ylim(bottom=0.5)  # a bin of one pixel still shows
    save_figure(fig, path)
