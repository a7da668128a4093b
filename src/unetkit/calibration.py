"""Calibration statistics with bounded memory: expected calibration error (ECE), the
reliability table, and how well per-pixel uncertainty finds the errors.

Training (the ECE before and after temperature scaling) and `evaluate` both reduce from
`CalibrationStats`, so their numbers agree by construction. Inputs are per-pixel arrays:

- confidence: the probability of the predicted class (max class probability; for a binary
  model max(p, 1 - p)); correct: the predicted class equals the truth;
- uncertainty (optional): any score that is higher where the model is less sure, e.g.
  predictive entropy.

Memory is fixed however many pixels are added: `bins` equal-width confidence bins over
[0, 1] (count, sum of confidence, sum of correct) and two fine histograms of uncertainty,
one for errors and one for correct pixels. The uncertainty bins are equal-width in
log10(uncertainty) from 1e-8 up to `max_uncertainty`: polarised probabilities put most
pixels at entropies of 1e-6..1e-3, which equal-width bins in entropy would lump into one.
AUROC and the share of errors among the most uncertain pixels only depend on the order
of the scores, so the log scale changes nothing but the resolution. Pixels in the same bin
count as ties (half a pair each), the top-fraction boundary bin is taken proportionally.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from unetkit.errors import UnetkitError

ECE_BINS = 15
UNCERTAINTY_BINS = 1000
LOG_FLOOR = -8.0  # uncertainties below 1e-8 (and 0) share the first bin
TOP_FRACTION = 0.1


def confidence_and_prediction(probs: np.ndarray, binary: bool) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities with the class axis first (K×..., K = 1 foreground channel for
    binary models) -> (confidence, predicted class), as masks are made: p > 0.5 or argmax."""
    probs = np.asarray(probs)
    if binary:
        p = probs[0].astype(np.float64)
        return np.maximum(p, 1.0 - p), (p > 0.5).astype(np.int64)
    return probs.max(0).astype(np.float64), probs.argmax(0).astype(np.int64)


class CalibrationStats:
    """Accumulates calibration and error-capture statistics over any number of pixels."""

    def __init__(self, max_uncertainty: float = math.log(2), bins: int = ECE_BINS,
                 uncertainty_bins: int = UNCERTAINTY_BINS) -> None:
        if not max_uncertainty > 10 ** LOG_FLOOR:
            raise UnetkitError(f"The largest uncertainty must be above 1e-8, not "
                               f"{max_uncertainty}.")
        self.bins, self.log_top = bins, math.log10(max_uncertainty)
        self.count = np.zeros(bins, np.int64)
        self.confidence_sum = np.zeros(bins, np.float64)
        self.correct_sum = np.zeros(bins, np.float64)
        self.errors = np.zeros(uncertainty_bins, np.int64)  # uncertainty histogram of errors
        self.right = np.zeros(uncertainty_bins, np.int64)  # ... and of correct pixels

    def add(self, confidence: np.ndarray, correct: np.ndarray,
            uncertainty: np.ndarray | None = None) -> None:
        """Add pixels (arrays of one shape; flattened here)."""
        c = np.asarray(confidence, np.float64).ravel()
        ok = np.asarray(correct, bool).ravel()
        idx = np.clip((c * self.bins).astype(np.int64), 0, self.bins - 1)
        self.count += np.bincount(idx, minlength=self.bins)
        self.confidence_sum += np.bincount(idx, weights=c, minlength=self.bins)
        self.correct_sum += np.bincount(idx, weights=ok, minlength=self.bins)
        if uncertainty is not None:
            u = self.uncertainty_bin(np.asarray(uncertainty).ravel())
            n = len(self.errors)
            self.errors += np.bincount(u[~ok], minlength=n)
            self.right += np.bincount(u[ok], minlength=n)

    def uncertainty_bin(self, u: np.ndarray) -> np.ndarray:
        """The fine-histogram bin of each uncertainty (log10 scale, see the module doc)."""
        n = len(self.errors)
        logs = np.log10(np.maximum(u.astype(np.float64), 10 ** LOG_FLOOR))
        pos = (logs - LOG_FLOOR) / (self.log_top - LOG_FLOOR) * n
        return np.clip(pos.astype(np.int64), 0, n - 1)

    @property
    def pixels(self) -> int:
        return int(self.count.sum())

    def ece(self) -> float | None:
        """sum over bins of (pixels in bin / all pixels) × |accuracy - mean confidence|."""
        n = self.count.sum()
        return float(np.abs(self.correct_sum - self.confidence_sum).sum() / n) if n else None

    def table(self) -> list[dict[str, Any]]:
        """The reliability data: per bin its edges, count, mean confidence and accuracy."""
        rows = []
        for b in range(self.bins):
            n = int(self.count[b])
            rows.append({"lower": b / self.bins, "upper": (b + 1) / self.bins, "count": n,
                         "confidence": float(self.confidence_sum[b] / n) if n else None,
                         "accuracy": float(self.correct_sum[b] / n) if n else None})
        return rows

    def uncertainty_auroc(self) -> float | None:
        """P(an error is more uncertain than a correct pixel), ties counting half; None
        without errors or without correct pixels."""
        pos, neg = self.errors.astype(np.float64), self.right.astype(np.float64)
        if not pos.sum() or not neg.sum():
            return None
        below = np.cumsum(neg) - neg
        return float((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))

    def errors_in_top(self, fraction: float = TOP_FRACTION) -> float | None:
        """The share of all errors among the `fraction` most uncertain pixels; None without
        errors."""
        pos = self.errors[::-1].astype(np.float64)  # most uncertain first
        total = pos + self.right[::-1]
        if not pos.sum():
            return None
        before = np.cumsum(total) - total
        take = np.clip(fraction * total.sum() - before, 0, total)
        share = np.divide(take, total, out=np.zeros_like(total), where=total > 0)
        return float((pos * share).sum() / pos.sum())

    def summary(self) -> dict[str, Any]:
        """The metrics JSON's "calibration" block (without the temperature)."""
        return {"ece": self.ece(), "bins": self.table(), "pixels": self.pixels,
                "uncertainty_auroc": self.uncertainty_auroc(),
                "errors_in_top10pct_uncertain": self.errors_in_top(TOP_FRACTION)}
