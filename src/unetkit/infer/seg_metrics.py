"""Pixel-level scores from a confusion matrix, per-image scores, and boundary distance (HD95).

Data-set scores pool pixels: add up one confusion matrix over all images, then summarise
it, so big images weigh more and a class's IoU is not an average of per-image IoUs.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from unetkit.errors import UnetkitError


def _check_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise UnetkitError(f"Prediction shape {pred.shape} does not match the mask's "
                           f"{truth.shape}.")
    return pred, truth


def confusion(pred: np.ndarray, truth: np.ndarray, num_classes: int,
              ignore: int = 255) -> np.ndarray:
    """K×K int64 counts: row = true class, column = predicted class; `ignore` pixels skipped."""
    pred, truth = _check_pair(pred, truth)
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


def _class_scores(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU and Dice; a class absent from truth and prediction scores 1.0."""
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    fp = conf.sum(0) - tp
    fn = conf.sum(1) - tp
    absent = tp + fp + fn == 0
    iou = np.where(absent, 1.0, tp / np.where(absent, 1.0, tp + fp + fn))
    dice = np.where(absent, 1.0, 2 * tp / np.where(absent, 1.0, 2 * tp + fp + fn))
    return iou, dice


def _micro(conf: np.ndarray, classes: np.ndarray) -> tuple[float, float]:
    """IoU and Dice of the listed classes' pixels pooled: sum TP, FP and FN over the classes
    first, then score once (1.0 when all three sums are 0: the empty-mask rule)."""
    conf = conf.astype(np.float64)
    tp = np.diag(conf)[classes].sum()
    fp = (conf.sum(0) - np.diag(conf))[classes].sum()
    fn = (conf.sum(1) - np.diag(conf))[classes].sum()
    if tp + fp + fn == 0:
        return 1.0, 1.0
    return float(tp / (tp + fp + fn)), float(2 * tp / (2 * tp + fp + fn))


def summarise(conf: np.ndarray, class_names: list[str], binary: bool) -> dict:
    """The metrics JSON: pixel accuracy, macro and micro IoU/Dice, per-class scores.

    Each class is scored from the pooled pixels of all images (a class absent from both
    truth and prediction scores 1.0, the empty-mask rule). Then, over a set of classes:

    - macro: the plain mean of the per-class scores — `mean_iou`/`mean_dice` over every
      class (background included), `mean_iou_foreground`/`mean_dice_foreground` over
      classes 1..K-1;
    - micro: TP, FP and FN summed over the classes, then scored once — `micro_iou`/
      `micro_dice` over every class (with background; every wrong pixel is one FP and one
      FN, so micro_dice equals pixel_accuracy), `micro_iou_foreground`/
      `micro_dice_foreground` over classes 1..K-1 (a confusion between two foreground
      classes counts as FP and FN; a miss against background counts once).

    Binary tasks also report "dice" and "iou" of the foreground class (class 1); for them
    the foreground macro and micro scores equal these.
    """
    conf = np.asarray(conf)
    k = conf.shape[0]
    if conf.ndim != 2 or conf.shape[1] != k:
        raise UnetkitError(f"A confusion matrix must be square, not shape {conf.shape}.")
    if len(class_names) != k:
        raise UnetkitError(f"Got {len(class_names)} class names for {k} classes.")
    if binary and k != 2:
        raise UnetkitError(f"A binary task has 2 classes, not {k}.")
    total = int(conf.sum())
    if total == 0:
        raise UnetkitError("There are no pixels to score: every pixel was ignored or no "
                           "images were scored.")
    iou, dice = _class_scores(conf)
    micro_iou, micro_dice = _micro(conf, np.arange(k))
    out: dict = {
        "pixel_accuracy": float(np.trace(conf) / total),
        "mean_iou": float(iou.mean()),
        "mean_dice": float(dice.mean()),
        "micro_iou": micro_iou,
        "micro_dice": micro_dice,
    }
    if k >= 2:
        fg_iou, fg_dice = _micro(conf, np.arange(1, k))
        out.update({"mean_iou_foreground": float(iou[1:].mean()),
                    "mean_dice_foreground": float(dice[1:].mean()),
                    "micro_iou_foreground": fg_iou, "micro_dice_foreground": fg_dice})
    out["per_class"] = {name: {"iou": float(iou[i]), "dice": float(dice[i])}
                        for i, name in enumerate(class_names)}
    if binary:
        out["dice"] = float(dice[1])
        out["iou"] = float(iou[1])
    return out


def per_image_scores(pred: np.ndarray, truth: np.ndarray, num_classes: int,
                     ignore: int = 255) -> dict:
    """One image's dice, iou (mean over foreground classes) and pixel_accuracy.

    Foreground classes are 1..K-1 (class 1 for binary tasks). A class absent from both the
    truth and the prediction of this image scores 1.0 (the empty-mask rule: predicting
    nothing where there is nothing is perfect), so an empty image predicted empty scores
    1.0. An image whose pixels are all `ignore` has pixel_accuracy 1.0 by the same rule.
    """
    if num_classes < 2:
        raise UnetkitError(f"Per-image scores need at least 2 classes, not {num_classes}.")
    conf = confusion(pred, truth, num_classes, ignore)
    iou, dice = _class_scores(conf)
    total = conf.sum()
    return {"dice": float(dice[1:].mean()), "iou": float(iou[1:].mean()),
            "pixel_accuracy": float(np.trace(conf) / total) if total else 1.0}


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Object pixels with a background neighbour (face-connected) or on the image edge."""
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(
        mask.ndim, 1), border_value=0)
    return mask & ~eroded


def hd95(pred_mask: np.ndarray, truth_mask: np.ndarray) -> float:
    """95th-percentile symmetric Hausdorff distance between the two masks' boundaries, in px.

    Boundary pixels are object pixels touching background (4-neighbour in 2-D) or the image
    edge. For each boundary pixel of one mask, the Euclidean distance to the nearest
    boundary pixel of the other; the result is the larger of the two directed 95th
    percentiles (as in MONAI). NaN if either mask is empty: the distance is undefined, and
    averaging code should skip it (np.nanmean) rather than count it as 0.
    """
    pred, truth = _check_pair(pred_mask, truth_mask)
    pred, truth = pred > 0, truth > 0
    if not pred.any() or not truth.any():
        return float("nan")
    pb, tb = _boundary(pred), _boundary(truth)
    to_truth = ndimage.distance_transform_edt(~tb)
    to_pred = ndimage.distance_transform_edt(~pb)
    return float(max(np.percentile(to_truth[pb], 95), np.percentile(to_pred[tb], 95)))
