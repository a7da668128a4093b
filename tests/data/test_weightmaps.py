"""U-Net weight maps against the formula on simple layouts and a brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from unetkit.data.weightmaps import binary_to_instances, unet_weight_map
from unetkit.errors import UsageError


def draw_disc(labels: np.ndarray, cy: int, cx: int, r: int, value: int) -> None:
    y0, y1 = max(cy - r, 0), min(cy + r + 1, labels.shape[0])
    x0, x1 = max(cx - r, 0), min(cx + r + 1, labels.shape[1])
    yy, xx = np.mgrid[y0:y1, x0:x1]
    labels[y0:y1, x0:x1][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = value


def two_discs(gap: int, r: int = 6, shape=(64, 96)) -> tuple[np.ndarray, int, int]:
    """Two discs on row 32; `gap` = distance between the facing edge pixels (gap-1 bg pixels)."""
    labels = np.zeros(shape, np.int32)
    cx1 = 20
    cx2 = cx1 + 2 * r + gap
    draw_disc(labels, 32, cx1, r, 1)
    draw_disc(labels, 32, cx2, r, 2)
    return labels, 32, cx1 + r + gap // 2  # midpoint pixel


def brute_force(labels, w0=10.0, sigma=5.0):
    ids = np.unique(labels[labels > 0])
    n_fg = np.count_nonzero(labels)
    wc = np.where(labels > 0, (labels.size - n_fg) / n_fg, 1.0)
    if len(ids) < 2:
        return wc
    d = np.sort(np.stack([ndimage.distance_transform_edt(labels != i) for i in ids]), axis=0)
    border = w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma**2))
    return wc + np.where(labels == 0, border, 0.0)


@pytest.mark.parametrize("gap", [2, 4, 8, 12])
def test_gap_midpoint_matches_formula(gap):
    labels, y, x = two_discs(gap)
    w0, sigma = 10.0, 5.0
    weights = unet_weight_map(labels, w0=w0, sigma=sigma)
    assert weights.dtype == np.float32 and weights.shape == labels.shape
    # background w_c is 1 under "balanced"; d1 = d2 = gap / 2 at the midpoint
    expected = 1.0 + w0 * math.exp(-((gap / 2 + gap / 2) ** 2) / (2 * sigma**2))
    assert weights[y, x] == pytest.approx(expected, rel=1e-5)
    # foreground pixels carry w_c only: n_background / n_foreground
    n_fg = np.count_nonzero(labels)
    assert np.allclose(weights[labels > 0], (labels.size - n_fg) / n_fg, rtol=1e-6)
    # far from both discs: w_c (=1) and a vanishing border term
    assert weights[0, -1] == pytest.approx(1.0, abs=1e-3)
    assert weights[63, 0] == pytest.approx(1.0, abs=1e-3)


def test_single_object_has_no_border_term():
    labels = np.zeros((32, 40), np.int32)
    draw_disc(labels, 16, 20, 5, 3)
    weights = unet_weight_map(labels)
    n_fg = np.count_nonzero(labels)
    assert np.array_equal(weights[labels == 0], np.ones(labels.size - n_fg, np.float32))
    assert np.allclose(weights[labels > 0], (labels.size - n_fg) / n_fg)
    assert np.array_equal(unet_weight_map(np.zeros((8, 8), np.int32)), np.ones((8, 8)))


def test_class_weight_options():
    labels, y, x = two_discs(4)
    none = unet_weight_map(labels, class_weights="none")
    border = 10.0 * math.exp(-16 / 50)
    assert none[y, x] == pytest.approx(1 + border, rel=1e-5)
    assert np.all(none[labels > 0] == 1.0)
    fixed = unet_weight_map(labels, class_weights=(0.5, 3.0))
    assert fixed[y, x] == pytest.approx(0.5 + border, rel=1e-5)
    assert np.all(fixed[labels > 0] == 3.0)
    with pytest.raises(UsageError):
        unet_weight_map(labels, class_weights="inverse")
    with pytest.raises(ValueError, match="binary_to_instances"):
        unet_weight_map(labels > 0)


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    labels = np.zeros((48, 56), np.int32)
    for i in range(1, int(rng.integers(2, 9))):
        draw_disc(labels, int(rng.integers(0, 48)), int(rng.integers(0, 56)),
                  int(rng.integers(1, 6)), i)
    sigma = float(rng.uniform(1.0, 8.0))
    got = unet_weight_map(labels, w0=10.0, sigma=sigma)
    np.testing.assert_allclose(got, brute_force(labels, sigma=sigma), rtol=1e-5, atol=2e-5)
    # sparse, non-consecutive ids give the same map
    sparse = np.where(labels > 0, labels * 1000 + 7, 0)
    np.testing.assert_array_equal(unet_weight_map(sparse, sigma=sigma), got)


def test_125_objects_at_512_get_border_bonus():
    rng = np.random.default_rng(0)
    labels = np.zeros((512, 512), np.int32)
    placed = 0
    while placed < 125:
        r = int(rng.integers(6, 14))
        cy, cx = (int(v) for v in rng.integers(r, 512 - r, 2))
        if labels[cy - r - 1:cy + r + 2, cx - r - 1:cx + r + 2].any():
            continue
        placed += 1
        draw_disc(labels, cy, cx, r, placed)
    weights = unet_weight_map(labels)
    assert weights.max() > 1 + 5  # touching-neighbour gaps get a large border bonus


def test_binary_to_instances():
    mask = np.zeros((6, 8), np.uint8)
    mask[0:2, 0:2] = 255
    mask[2, 2] = 255  # touches the first blob diagonally only
    mask[4:6, 5:8] = 1
    labels = binary_to_instances(mask)
    assert labels.dtype == np.int32 and labels.max() == 3
    assert len(np.unique(labels[0:2, 0:2])) == 1 and labels[2, 2] != labels[0, 0]
    assert binary_to_instances(mask, connectivity=8).max() == 2
    # class-index masks with ignore pixels: 255 is not foreground when ignore_index says so
    with_ignore = (mask > 0).astype(np.uint8)
    with_ignore[4:6, 5:8] = 255
    assert binary_to_instances(with_ignore).max() == 3
    assert binary_to_instances(with_ignore, ignore_index=255).max() == 2
