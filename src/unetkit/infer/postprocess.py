"""Clean up predicted masks: drop stray blobs, and turn a foreground mask into instances.

Connectivity defaults to full (8-neighbour in 2-D, as in skimage.measure.label), so blobs
touching at a corner are one component; pass connectivity=1 for 4-neighbour. Works on
2-D and 3-D masks. Inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

from unetkit.errors import UnetkitError

MAX_INSTANCES = int(np.iinfo(np.uint16).max)


def _structure(ndim: int, connectivity: int | None) -> np.ndarray:
    return ndimage.generate_binary_structure(ndim, ndim if connectivity is None else connectivity)


def _components(binary: np.ndarray, connectivity: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Component labels (0 = background) and each label's size (index 0 = background)."""
    labels, _ = ndimage.label(binary, structure=_structure(binary.ndim, connectivity))
    return labels, np.bincount(labels.ravel())


def keep_largest(mask: np.ndarray, classes: Iterable[int],
                 connectivity: int | None = None) -> np.ndarray:
    """Keep only the largest connected component of each listed class; the rest become 0.

    For tasks with one object per class (one car, one liver). Ties keep the component that
    comes first in raster order. Classes not listed are left alone.
    """
    out = np.array(mask, copy=True)
    for cls in classes:
        labels, sizes = _components(mask == cls, connectivity)
        if sizes.size <= 2:  # background plus at most one component
            continue
        sizes[0] = 0
        out[(labels > 0) & (labels != int(np.argmax(sizes)))] = 0
    return out


def remove_small(mask: np.ndarray, min_size: int, classes: Iterable[int],
                 connectivity: int | None = None) -> np.ndarray:
    """Set components of the listed classes with fewer than `min_size` pixels to 0."""
    out = np.array(mask, copy=True)
    for cls in classes:
        labels, sizes = _components(mask == cls, connectivity)
        small = sizes < min_size
        small[0] = False
        out[small[labels]] = 0
    return out


def _peak_markers(foreground: np.ndarray, min_distance: int,
                  connectivity: int | None) -> np.ndarray:
    """Labelled local maxima of the distance transform: one marker per object centre.

    A pixel is a peak if no foreground pixel within `min_distance` (chessboard) is further
    from the background; touching peak pixels (plateaus) form one marker.
    """
    dist = ndimage.distance_transform_edt(foreground)
    local_max = ndimage.maximum_filter(dist, size=2 * min_distance + 1, mode="constant")
    peaks = foreground & (dist == local_max)
    markers, _ = ndimage.label(peaks, structure=_structure(foreground.ndim, connectivity))
    return markers


def label_instances(foreground: np.ndarray, split_touching: bool = True,
                    min_distance: int = 3, connectivity: int | None = None) -> np.ndarray:
    """Label the objects of a foreground mask 1..N (uint16, 0 = background).

    Without splitting, objects are connected components. With `split_touching` (a scipy-only
    stand-in for a distance-transform watershed; skimage is not a dependency), each component
    holding several distance-transform peaks at least `min_distance` apart is split by giving
    every pixel to its nearest peak in that component. Nearest-peak borders are exact for
    equal touching discs and shift towards the smaller object for unequal ones. Components
    without a peak of their own (squeezed by a bigger neighbour) stay whole.
    """
    fg = np.asarray(foreground) > 0
    labels, count = ndimage.label(fg, structure=_structure(fg.ndim, connectivity))
    if not split_touching or count == 0:
        return _to_uint16(labels, count)
    markers = _peak_markers(fg, max(int(min_distance), 1), connectivity)
    out = np.zeros(fg.shape, dtype=np.int64)
    next_id = 1
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        component = labels[box] == index
        local = np.where(component, markers[box], 0)
        ids = np.unique(local[local > 0])
        if ids.size <= 1:
            out[box][component] = next_id
            next_id += 1
            continue
        # for every pixel, the coordinates of the nearest marker pixel of this component
        nearest = ndimage.distance_transform_edt(local == 0, return_distances=False,
                                                 return_indices=True)
        owner = local[tuple(nearest)][component]
        _, rank = np.unique(owner, return_inverse=True)
        out[box][component] = next_id + rank.ravel()
        next_id += ids.size
    return _to_uint16(out, next_id - 1)


def _to_uint16(labels: np.ndarray, count: int) -> np.ndarray:
    if count > MAX_INSTANCES:
        raise UnetkitError(f"The mask has {count} objects, more than the {MAX_INSTANCES} a "
                           f"16-bit instance image can hold.")
    return labels.astype(np.uint16)
