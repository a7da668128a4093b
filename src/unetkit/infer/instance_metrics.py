"""Object-level scores: how many predicted instances match a true one (Data Science Bowl style)."""

from __future__ import annotations

import numpy as np

from unetkit.errors import UnetkitError


def ratio(num: float, den: float) -> float:
    """num/den, with 0/0 = 1.0: nothing to find and nothing found is a perfect score."""
    return float(num / den) if den else 1.0


def match_instances(pred: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.5) -> dict:
    """Match predicted to true instances one-to-one where IoU > iou_threshold.

    Label images: 0 is background, every other value is one object (labels need not be
    consecutive). A match needs IoU strictly above the threshold, as in the Data Science
    Bowl 2018 metric. Above 0.5 each object can overlap at most one partner that much, so
    the matching is unique; below 0.5 pairs are taken greedily by descending IoU (not
    guaranteed optimal). Returns precision, recall, f1 (each 1.0 when there is nothing to
    count, e.g. no objects on either side), tp, fp, fn.
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise UnetkitError(f"Prediction shape {pred.shape} does not match the truth's "
                           f"{truth.shape}.")
    if (pred.size and pred.min() < 0) or (truth.size and truth.min() < 0):
        raise UnetkitError("Instance label images must not hold negative labels.")
    p, t = pred.ravel().astype(np.int64), truth.ravel().astype(np.int64)
    p_ids, p_area = np.unique(p[p > 0], return_counts=True)
    t_ids, t_area = np.unique(t[t > 0], return_counts=True)
    tp = 0
    if p_ids.size and t_ids.size:
        both = (p > 0) & (t > 0)
        # sparse overlap table: one key per (pred, truth) pair that shares pixels
        stride = int(t_ids[-1]) + 1
        keys, inter = np.unique(p[both] * stride + t[both], return_counts=True)
        pi = np.searchsorted(p_ids, keys // stride)
        ti = np.searchsorted(t_ids, keys % stride)
        iou = inter / (p_area[pi] + t_area[ti] - inter)
        order = np.argsort(-iou, kind="stable")
        used_p: set[int] = set()
        used_t: set[int] = set()
        for k in order:
            if iou[k] <= iou_threshold:
                break
            if int(pi[k]) in used_p or int(ti[k]) in used_t:
                continue
            used_p.add(int(pi[k]))
            used_t.add(int(ti[k]))
            tp += 1
    fp, fn = int(p_ids.size) - tp, int(t_ids.size) - tp
    return {"precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn),
            "f1": ratio(2 * tp, 2 * tp + fp + fn), "tp": tp, "fp": fp, "fn": fn}
