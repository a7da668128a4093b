"""The one scoring core: a confusion matrix collected once, every score reduced from it.

Statistics and reductions are separate steps (as segmentation_models_pytorch separates
`get_stats` from its reductions), so training, `evaluate`, bench and the planner report the
same numbers by construction:

- statistics: a K×K int64 confusion matrix (row = true class, column = predicted class,
  the ignore value excluded) — from numpy masks with `confusion`, or from torch tensors
  with `confusion_metric`, a torchmetrics metric whose sum is synchronised across DDP
  processes;
- reductions (numpy or torch matrices alike): per-class IoU/Dice with the empty-mask rule
  (`class_scores`), macro means (`scores_from_confusion`), micro scores (`micro_scores`),
  pixel accuracy, the metrics JSON (`summarise`) and one image's scores
  (`per_image_scores`).

A class absent from both truth and prediction scores 1.0 (the empty-mask rule: predicting
nothing where there is nothing is perfect); a matrix with no pixels has pixel accuracy 1.0
by the same rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from unetkit.errors import UnetkitError

IGNORE = 255  # the internal ignore value of class-index masks (data.transforms.IGNORE)


def check_pair(pred: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both masks as arrays of one shape: a size mismatch is the user's data, not a bug."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise UnetkitError(f"Prediction shape {pred.shape} does not match the mask's "
                           f"{truth.shape}.")
    return pred, truth


def confusion(pred: Any, truth: Any, num_classes: int, ignore: int = IGNORE) -> np.ndarray:
    """K×K int64 counts from numpy masks: row = true class, column = predicted class.

    `ignore` pixels are skipped; any other value outside 0..K-1 is an error, since it
    would silently move counts between cells.
    """
    pred, truth = check_pair(pred, truth)
    if num_classes < 1:
        raise UnetkitError(f"Need at least 1 class to score, not {num_classes}.")
    keep = truth != ignore
    t = truth[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        bad = t[(t < 0) | (t >= num_classes)][0]
        raise UnetkitError(f"The mask has class {bad}, outside 0..{num_classes - 1} "
                           f"(and not the ignore value {ignore}).")
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        bad = p[(p < 0) | (p >= num_classes)][0]
        raise UnetkitError(f"The prediction has class {bad}, outside 0..{num_classes - 1}.")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def confusion_metric(num_classes: int, ignore: int = IGNORE) -> MulticlassConfusionMatrix:
    """The same matrix from torch tensors, accumulated in int64 on the tensors' device.

    torchmetrics sums its state across processes (dist_reduce_fx "sum"), so a DDP epoch
    is scored from every process's pixels. Arguments are not validated: it runs per step.
    """
    return MulticlassConfusionMatrix(num_classes=num_classes, ignore_index=ignore,
                                     validate_args=False)


def predictions(logits: torch.Tensor) -> torch.Tensor:
    """Class index per pixel: threshold 0 on a single binary logit, argmax otherwise."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def _counts(conf: Any) -> np.ndarray:
    """A square matrix as float64 numpy, from numpy or torch (any device)."""
    if isinstance(conf, torch.Tensor):
        conf = conf.detach().cpu().numpy()
    conf = np.asarray(conf)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise UnetkitError(f"A confusion matrix must be square, not shape {conf.shape}.")
    return conf.astype(np.float64)


def _tp_fp_fn(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = np.diag(conf)
    return tp, conf.sum(0) - tp, conf.sum(1) - tp


def class_scores(conf: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU and Dice; a class absent from truth and prediction scores 1.0."""
    tp, fp, fn = _tp_fp_fn(_counts(conf))
    absent = tp + fp + fn == 0
    iou = np.where(absent, 1.0, tp / np.where(absent, 1.0, tp + fp + fn))
    dice = np.where(absent, 1.0, 2 * tp / np.where(absent, 1.0, 2 * tp + fp + fn))
    return iou, dice


def micro_scores(conf: Any, classes: Any) -> tuple[float, float]:
    """IoU and Dice of the listed classes' pixels pooled: sum TP, FP and FN over the classes
    first, then score once (1.0 when all three sums are 0: the empty-mask rule)."""
    tp, fp, fn = (v[np.asarray(classes, dtype=np.int64)].sum()
                  for v in _tp_fp_fn(_counts(conf)))
    if tp + fp + fn == 0:
        return 1.0, 1.0
    return float(tp / (tp + fp + fn)), float(2 * tp / (2 * tp + fp + fn))


def pixel_accuracy(conf: Any) -> float:
    """Correct pixels over scored pixels; 1.0 when none were scored (the empty-mask rule)."""
    conf = _counts(conf)
    total = conf.sum()
    return float(np.trace(conf) / total) if total else 1.0


def scores_from_confusion(conf: Any) -> dict[str, Any]:
    """Per-class IoU/Dice arrays, their macro means over all classes, and pixel accuracy.

    What training logs each epoch; `summarise` adds the rest of the metrics JSON.
    """
    iou, dice = class_scores(conf)
    return {"iou": iou, "dice": dice, "mean_iou": float(iou.mean()),
            "mean_dice": float(dice.mean()), "pixel_accuracy": pixel_accuracy(conf)}


def summarise(conf: Any, class_names: list[str], binary: bool) -> dict[str, Any]:
    """The metrics JSON: pixel accuracy, macro and micro IoU/Dice, per-class scores.

    Each class is scored from the pooled pixels of all images (empty-mask rule for absent
    classes). Then, over a set of classes:

    - macro: the plain mean of the per-class scores — `mean_iou`/`mean_dice` over every
      class (background included), `mean_iou_foreground`/`mean_dice_foreground` over
      classes 1..K-1;
    - micro: TP, FP and FN summed over the classes, then scored once — `micro_iou`/
      `micro_dice` over every class (with background; every wrong pixel is one FP and one
      FN, so micro_dice equals pixel_accuracy), `micro_iou_foreground`/
      `micro_dice_foreground` over classes 1..K-1 (a confusion between two foreground
      classes counts as FP and FN; a miss against background counts once).

    Binary tasks also report "dice" and "iou" of the foreground class (class 1); for them
    the foreground macro and micro scores equal these. `confusion` is the pooled matrix
    itself (rows: true class, columns: predicted class, in pixels).
    """
    conf = _counts(conf)
    k = conf.shape[0]
    if len(class_names) != k:
        raise UnetkitError(f"Got {len(class_names)} class names for {k} classes.")
    if binary and k != 2:
        raise UnetkitError(f"A binary task has 2 classes, not {k}.")
    if conf.sum() == 0:
        raise UnetkitError("There are no pixels to score: every pixel was ignored or no "
                           "images were scored.")
    s = scores_from_confusion(conf)
    iou, dice = s["iou"], s["dice"]
    micro_iou, micro_dice = micro_scores(conf, np.arange(k))
    out: dict[str, Any] = {"pixel_accuracy": s["pixel_accuracy"], "mean_iou": s["mean_iou"],
                           "mean_dice": s["mean_dice"], "micro_iou": micro_iou,
                           "micro_dice": micro_dice}
    if k >= 2:
        fg_iou, fg_dice = micro_scores(conf, np.arange(1, k))
        out.update({"mean_iou_foreground": float(iou[1:].mean()),
                    "mean_dice_foreground": float(dice[1:].mean()),
                    "micro_iou_foreground": fg_iou, "micro_dice_foreground": fg_dice})
    out["per_class"] = {name: {"iou": float(iou[i]), "dice": float(dice[i])}
                        for i, name in enumerate(class_names)}
    if binary:
        out["dice"] = float(dice[1])
        out["iou"] = float(iou[1])
    out["confusion"] = np.rint(conf).astype(np.int64).tolist()  # rows true, columns predicted
    return out


def per_image_scores(pred: Any, truth: Any, num_classes: int,
                     ignore: int = IGNORE) -> dict[str, float]:
    """One image's dice, iou (mean over foreground classes) and pixel_accuracy.

    Foreground classes are 1..K-1 (class 1 for binary tasks). By the empty-mask rule an
    empty image predicted empty scores 1.0, and an image whose pixels are all `ignore` has
    pixel_accuracy 1.0.
    """
    if num_classes < 2:
        raise UnetkitError(f"Per-image scores need at least 2 classes, not {num_classes}.")
    conf = confusion(pred, truth, num_classes, ignore)
    iou, dice = class_scores(conf)
    return {"dice": float(dice[1:].mean()), "iou": float(iou[1:].mean()),
            "pixel_accuracy": pixel_accuracy(conf)}
