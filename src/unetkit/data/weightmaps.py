"""Per-pixel loss weights from the U-Net paper (Ronneberger et al., 2015, eq. 2).

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

d1 and d2 are the Euclidean distances (between pixel centres) from x to the nearest and the
second-nearest object.  The border term is added to background pixels only, and is 0
everywhere when the image holds fewer than two objects.

w_c convention ("balanced"): background pixels get 1 and foreground pixels get
n_background / n_foreground, both counted in this image (among its annotated pixels when a
`valid` mask marks them: partial labels), i.e. w_c = 1 / frequency scaled so
that background is 1.  Keeping background at 1 keeps w0 meaning what it means in the paper
(the border bonus relative to an ordinary background pixel).  If either class is absent,
w_c = 1 everywhere.  ``class_weights="none"`` gives w_c = 1 everywhere and a tuple
``(w_background, w_foreground)`` sets the two values directly.

Speed: the distance to each object is computed only inside its bounding box grown by the
distance at which the border term falls below 1e-6 * w0 (about 5.3 sigma); farther pixels
cannot change the result by more than that.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from unetkit.errors import UnetkitError, UsageError

# border terms smaller than this fraction of w0 are dropped (sets the crop around each object)
_BORDER_TOLERANCE = 1e-6


def _class_weight_values(
    instances: np.ndarray, class_weights: str | tuple | list | None,
    valid: np.ndarray | None = None,
) -> tuple[float, float]:
    if class_weights is None or (isinstance(class_weights, str)
                                 and class_weights.lower() == "none"):
        return 1.0, 1.0
    if isinstance(class_weights, str):
        if class_weights.lower() != "balanced":
            raise UsageError(f"Weight-map class weights {class_weights!r} are unknown; use "
                             "'balanced', 'none' or two numbers (background, foreground).")
        n_fg = int(np.count_nonzero(instances if valid is None else instances[valid]))
        n_bg = (instances.size if valid is None else int(np.count_nonzero(valid))) - n_fg
        if n_fg == 0 or n_bg == 0:
            return 1.0, 1.0
        return 1.0, n_bg / n_fg
    values = tuple(float(v) for v in class_weights)
    if len(values) != 2 or not all(math.isfinite(v) and v >= 0 for v in values):
        raise UsageError(f"Weight-map class weights must be two numbers >= 0 (background, "
                         f"foreground), got {class_weights!r}.")
    return values


def _nearest_two_distances(labels: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """d1, d2 per pixel; exact wherever d1 + d2 <= reach, otherwise >= their true values."""
    d1 = np.full(labels.shape, np.inf, dtype=np.float64)
    d2 = np.full(labels.shape, np.inf, dtype=np.float64)
    margin = int(math.ceil(reach)) + 1
    h, w = labels.shape
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        rows = slice(max(box[0].start - margin, 0), min(box[0].stop + margin, h))
        cols = slice(max(box[1].start - margin, 0), min(box[1].stop + margin, w))
        # the whole object lies inside the crop, so these distances are exact in the crop;
        # outside it they exceed `reach` and count as infinite
        dist = ndimage.distance_transform_edt(labels[rows, cols] != index)
        near, second = d1[rows, cols], d2[rows, cols]
        np.minimum(second, np.maximum(near, dist), out=second)
        np.minimum(near, dist, out=near)
    return d1, d2


def unet_weight_map(
    instances: np.ndarray,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: str | tuple = "balanced",
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """U-Net weight map (H x W float32) for an H x W label image (0 = background, 1..N objects).

    Labels need not be consecutive.  See the module docstring for the w_c convention;
    `valid` (H x W bool, the annotated pixels) keeps unlabeled pixels out of its counts.
    """
    instances = np.asarray(instances)
    if instances.ndim != 2:
        raise ValueError(f"instances must be an H x W label image, got shape {instances.shape}")
    if instances.dtype == bool or not np.issubdtype(instances.dtype, np.integer):
        raise ValueError(f"instances must hold integer object ids, got dtype {instances.dtype}; "
                         "split binary masks with binary_to_instances first")
    if not (math.isfinite(w0) and w0 >= 0):
        raise UsageError(f"Weight-map w0 must be a number >= 0, got {w0}.")
    if not (math.isfinite(sigma) and sigma > 0):
        raise UsageError(f"Weight-map sigma must be a number > 0, got {sigma}.")
    if instances.size and int(instances.min()) < 0:
        raise UnetkitError(f"An instance mask holds the negative id {int(instances.min())}; "
                           "ids must be 0 (background) or positive.")

    if valid is not None and np.shape(valid) != instances.shape:
        raise ValueError(f"valid must match the labels' shape {instances.shape}, got "
                         f"{np.shape(valid)}")
    w_bg, w_fg = _class_weight_values(instances, class_weights,
                                      None if valid is None else np.asarray(valid, dtype=bool))
    foreground = instances > 0
    weights = np.where(foreground, np.float32(w_fg), np.float32(w_bg)).astype(np.float32)

    ids = np.unique(instances[foreground])
    if len(ids) < 2 or w0 == 0:
        return weights
    if ids[-1] > 2 * len(ids) + 16:  # sparse ids: relabel so find_objects stays small
        labels = np.searchsorted(ids, instances).astype(np.int32) + 1
        labels[~foreground] = 0
    else:
        labels = instances.astype(np.int32, copy=False)

    reach = sigma * math.sqrt(2.0 * math.log(1.0 / _BORDER_TOLERANCE))
    d1, d2 = _nearest_two_distances(labels, reach)
    background = ~foreground
    total = d1[background] + d2[background]  # inf where fewer than two objects are in reach
    border = w0 * np.exp(-(total * total) / (2.0 * sigma * sigma))
    weights[background] += border.astype(np.float32)
    return weights


def binary_to_instances(
    mask: np.ndarray, connectivity: int = 4, ignore_index: int | None = None
) -> np.ndarray:
    """Label the connected components of a binary mask (nonzero = foreground) as 1..N (int32).

    connectivity is 4 (edge neighbours; diagonally touching objects stay apart) or 8.
    Pixels equal to ignore_index, if given, count as background.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be H x W, got shape {mask.shape}")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    foreground = mask != 0
    if ignore_index is not None:
        foreground &= mask != ignore_index
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    labels, _ = ndimage.label(foreground, structure=structure, output=np.int32)
    return labels
