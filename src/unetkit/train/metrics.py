"""Training's scores: the scoring core's torch path (unetkit.scoring), named for train/.

One confusion matrix per epoch (`confusion_metric`, synchronised across processes by
torchmetrics) gives every figure at once through `scores_from_confusion`: per class, the
mean over classes, and the binary foreground class — the same reductions `evaluate` uses.
"""

from __future__ import annotations

from unetkit.scoring import IGNORE, confusion_metric, predictions, scores_from_confusion

__all__ = ["IGNORE", "confusion_metric", "predictions", "scores_from_confusion"]
