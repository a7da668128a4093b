"""Boundary distance (HD95); the pixel scores are the scoring core's, re-exported here.

Data-set scores pool pixels: add up one confusion matrix over all images (`confusion`),
then summarise it (`summarise`), so big images weigh more and a class's IoU is not an
average of per-image IoUs. All of that lives in unetkit.scoring, shared with training.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from unetkit.scoring import check_pair, confusion, per_image_scores, summarise

__all__ = ["confusion", "hd95", "per_image_scores", "summarise"]


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
    pred, truth = check_pair(pred_mask, truth_mask)
    pred, truth = pred > 0, truth > 0
    if not pred.any() or not truth.any():
        return float("nan")
    pb, tb = _boundary(pred), _boundary(truth)
    to_truth = ndimage.distance_transform_edt(~tb)
    to_pred = ndimage.distance_transform_edt(~pb)
    return float(max(np.percentile(to_truth[pb], 95), np.percentile(to_pred[tb], 95)))
