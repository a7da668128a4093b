"""Clean up predicted masks: drop stray blobs, and turn a foreground mask into instances.

Connectivity defaults to full (8-neighbour in 2-D, as in skimage.measure.label), so blobs
touching at a corner are one component; pass connectivity=1 for 4-neighbour. Works on
2-D and 3-D masks. Inputs are never modified.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.morphology import local_maxima, reconstruction
from skimage.segmentation import relabel_sequential, watershed

from unetkit.errors import UnetkitError

MAX_INSTANCES = int(np.iinfo(np.uint16).max)
# default split_touching peak rules, as fractions of the median equivalent object radius
MIN_DISTANCE_FRACTION = 0.5
H_FRACTION = 0.1


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


def median_radius(labels: np.ndarray) -> float:
    """Median equivalent radius of the labelled objects: radius of the disc (ball) of equal area."""
    area = np.bincount(np.asarray(labels).ravel())[1:]
    area = area[area > 0]
    if area.size == 0:
        return 0.0
    n = labels.ndim
    unit_ball = math.pi ** (n / 2) / math.gamma(n / 2 + 1)
    return float(np.median((area / unit_ball) ** (1 / n)))


def _peak_markers(dist: np.ndarray, labels: np.ndarray, min_distance: int, h: float,
                  structure: np.ndarray) -> np.ndarray:
    """Labelled distance-transform peaks, one marker per object centre.

    A peak is a regional maximum rising more than `h` above the saddle towards any higher or
    equal one (a regional maximum of the h-maxima transform; a plateau is one marker) that
    holds a skimage `peak_local_max` point of its component (the highest within
    `min_distance`, chessboard). Only components with two or more such points can hold two
    markers, so only those are searched (cropped).
    """
    points = peak_local_max(dist, min_distance=min_distance, labels=labels,
                            exclude_border=False)
    owner = labels[tuple(points.T)]
    markers = np.zeros(labels.shape, dtype=np.int64)
    offset = 0
    boxes = ndimage.find_objects(labels)
    for index in np.flatnonzero(np.bincount(owner, minlength=len(boxes) + 1) >= 2):
        box = boxes[index - 1]
        own = labels[box] == index
        local = np.where(own, dist[box], 0.0)
        if h > 0:  # the h-maxima transform; skimage's h_maxima keeps equal peaks for any h
            local = reconstruction(local - h, local, method="dilation", footprint=structure)
        regional = local_maxima(local, footprint=structure, allow_borders=True)
        regions, _ = ndimage.label(regional & own, structure=structure)
        start = np.array([s.start for s in box])
        keep = np.unique(regions[tuple((points[owner == index] - start).T)])
        hit = np.isin(regions, keep[keep > 0])
        markers[box][hit] = regions[hit] + offset
        offset += int(regions.max())
    return markers


def label_instances(foreground: np.ndarray, split_touching: bool = True,
                    min_distance: int | None = None, connectivity: int | None = None,
                    h: float | None = None, compactness: float = 0.0) -> np.ndarray:
    """Label the objects of a foreground mask 1..N (uint16, 0 = background).

    Without splitting, objects are connected components. With `split_touching`, a component
    holding two or more distance-transform peaks (see `_peak_markers`) is split by a marker
    watershed (skimage) on the negated distance transform, masked to the foreground; other
    components stay whole. By default the peak rules scale with the mask's objects: with r
    the median equivalent radius of its components (`median_radius`), min_distance =
    round(MIN_DISTANCE_FRACTION * r) (at least 1) and h = H_FRACTION * r pixels.
    `compactness` > 0 gives the compact watershed. docs/instances.md has the measurements.
    """
    fg = np.asarray(foreground) > 0
    structure = _structure(fg.ndim, connectivity)
    labels, count = ndimage.label(fg, structure=structure)
    if not split_touching or count == 0:
        return _to_uint16(labels, count)
    radius = median_radius(labels)
    if min_distance is None:
        min_distance = round(MIN_DISTANCE_FRACTION * radius)
    h = H_FRACTION * radius if h is None else float(h)
    dist = ndimage.distance_transform_edt(fg)
    markers = _peak_markers(dist, labels, max(int(min_distance), 1), h, structure)
    on = markers > 0
    pairs = np.unique(np.stack([labels[on], markers[on]]), axis=1)  # (component, marker)
    split = np.bincount(pairs[0], minlength=count + 1)[labels] >= 2
    # components with fewer than two markers are seeded whole, so they stay one object
    seeds = np.where(split, markers, np.where(fg, labels + int(markers.max()), 0))
    out = watershed(-dist, seeds, mask=fg, connectivity=structure, compactness=compactness)
    out = relabel_sequential(out)[0]
    return _to_uint16(out, int(out.max()))


def _to_uint16(labels: np.ndarray, count: int) -> np.ndarray:
    if count > MAX_INSTANCES:
        raise UnetkitError(f"The mask has {count} objects, more than the {MAX_INSTANCES} a "
                           f"16-bit instance image can hold.")
    return labels.astype(np.uint16)
