"""Dice, IoU and pixel accuracy from a confusion matrix accumulated by torchmetrics.

One confusion matrix per epoch (synchronised across processes by torchmetrics) gives every
figure at once: per class, the mean over classes, and the binary foreground class.
"""

from __future__ import annotations

import torch
from torchmetrics.classification import MulticlassConfusionMatrix

IGNORE = 255


def confusion_metric(num_classes: int) -> MulticlassConfusionMatrix:
    return MulticlassConfusionMatrix(num_classes=num_classes, ignore_index=IGNORE,
                                     validate_args=False)


def predictions(logits: torch.Tensor) -> torch.Tensor:
    """Class index per pixel: threshold 0 on a single binary logit, argmax otherwise."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def scores_from_confusion(conf: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-class IoU/Dice (pooled over pixels) and their means; rows = truth, cols = prediction."""
    conf = conf.double()
    tp = conf.diag()
    fp = conf.sum(0) - tp
    fn = conf.sum(1) - tp
    present = (tp + fp + fn) > 0
    iou = torch.where(present, tp / (tp + fp + fn).clamp(min=1), torch.ones_like(tp))
    dice = torch.where(present, 2 * tp / (2 * tp + fp + fn).clamp(min=1), torch.ones_like(tp))
    acc = tp.sum() / conf.sum().clamp(min=1)
    return {"iou": iou, "dice": dice, "mean_iou": iou.mean(), "mean_dice": dice.mean(),
            "pixel_accuracy": acc}
