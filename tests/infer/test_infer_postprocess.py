"""Post-processing on hand-made masks whose answers can be read off the arrays."""

from __future__ import annotations

import numpy as np
import pytest
from infer_fixtures import shared_data
from scipy import ndimage

from unetkit.infer.instance_metrics import match_instances
from unetkit.infer.postprocess import keep_largest, label_instances, median_radius, remove_small

# class 1: blobs of 3 (top-left), 1 (diagonal to it) and 5 px; class 2: blobs of 2 and 1 px
MASK = np.array([
    [1, 1, 0, 0, 2, 2, 0],
    [1, 0, 0, 0, 0, 0, 0],
    [0, 1, 0, 1, 1, 1, 0],
    [0, 0, 0, 1, 1, 0, 2],
], dtype=np.uint8)


def test_keep_largest_per_class() -> None:
    before = MASK.copy()
    out = keep_largest(MASK, [1])
    np.testing.assert_array_equal(MASK, before)  # input untouched
    # 8-connectivity: (2,1) touches (1,0) diagonally, so that blob has 4 px and the 5-px wins
    expected = MASK.copy()
    expected[:3, :2] = 0
    np.testing.assert_array_equal(out, expected)
    both = keep_largest(MASK, [1, 2])
    assert both[3, 6] == 0 and (both[0, 4:6] == 2).all()
    assert (both == 1).sum() == 5


def test_keep_largest_tie_and_four_connectivity() -> None:
    tie = np.array([[1, 0, 1]], dtype=np.uint8)
    np.testing.assert_array_equal(keep_largest(tie, [1]), [[1, 0, 0]])
    # 4-connectivity splits the top-left blob into 3 + 1 px; the 5-px blob still wins
    out = keep_largest(MASK, [1], connectivity=1)
    assert out[2, 1] == 0 and (out == 1).sum() == 5


def test_remove_small() -> None:
    out = remove_small(MASK, 3, [1, 2])
    # class 1 blobs: 4 and 5 px stay; class 2 blobs: 2 and 1 px go
    np.testing.assert_array_equal(out, np.where(MASK == 2, 0, MASK))
    out4 = remove_small(MASK, 2, [1, 2], connectivity=1)
    assert out4[2, 1] == 0 and out4[3, 6] == 0  # the 1-px blobs
    assert (out4 == 1).sum() == 8 and (out4 == 2).sum() == 2
    np.testing.assert_array_equal(remove_small(MASK, 100, []), MASK)


def _disc(shape: tuple[int, int], centre: tuple[int, int], radius: float) -> np.ndarray:
    yy, xx = np.indices(shape)
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_two_touching_discs_become_two_instances() -> None:
    left, right = _disc((41, 60), (20, 20), 10), _disc((41, 60), (20, 37), 10)
    fg = left | right  # centres 17 apart, radius 10: they overlap in a neck
    assert ndimage_count(fg) == 1
    merged = label_instances(fg, split_touching=False)
    assert merged.dtype == np.uint16 and set(np.unique(merged)) == {0, 1}
    inst = label_instances(fg)
    assert inst.dtype == np.uint16 and set(np.unique(inst)) == {0, 1, 2}
    np.testing.assert_array_equal(inst > 0, fg)
    a, b = inst[20, 20], inst[20, 37]
    assert a != b and a > 0 and b > 0
    # equal discs: the split is the bisector x = 28.5, so each half is the other's mirror
    np.testing.assert_array_equal(inst[:, :29] == b, np.zeros((41, 29), bool))
    np.testing.assert_array_equal(inst[:, 29:] == a, np.zeros((41, 31), bool))
    assert (inst == a).sum() == (inst == b).sum()


def test_single_disc_and_separate_objects_stay_whole() -> None:
    disc = _disc((30, 30), (15, 15), 9)
    assert set(np.unique(label_instances(disc))) == {0, 1}
    fg = np.zeros((30, 40), bool)
    fg[2:8, 2:30] = True  # a long bar (ridge plateau: one marker)
    fg[12:27, 5:20] = True  # a square
    fg[12:14, 22:24] = True  # a 2x2 blob next to the square: no peak of its own
    inst = label_instances(fg, min_distance=5)
    assert len(np.unique(inst)) == 4
    for region in (inst[2:8, 2:30], inst[12:27, 5:20], inst[12:14, 22:24]):
        assert len(np.unique(region)) == 1 and region[0, 0] > 0


def test_empty_foreground() -> None:
    out = label_instances(np.zeros((4, 5), np.uint8))
    assert out.dtype == np.uint16 and not out.any()


def _ellipse(shape: tuple[int, int], centre: tuple[int, int], a: float, b: float) -> np.ndarray:
    yy, xx = np.indices(shape)
    return ((yy - centre[0]) / a) ** 2 + ((xx - centre[1]) / b) ** 2 <= 1


@pytest.mark.parametrize("scale", [1, 3])
def test_unequal_touching_discs_split_and_convex_blob_stays_whole(scale: int) -> None:
    """Default (scale-relative) rules: same answer for the same shapes at 3x the size."""
    shape = (60 * scale, 120 * scale)
    big = _disc(shape, (30 * scale, 30 * scale), 14 * scale)
    small = _disc(shape, (30 * scale, 51 * scale), 8 * scale)  # centres 21 apart: touching
    blob = _ellipse(shape, (30 * scale, 92 * scale), 12 * scale, 20 * scale)  # convex, 5:3
    fg = big | small | blob
    assert ndimage_count(fg) == 2
    inst = label_instances(fg)
    assert inst.max() == 3
    np.testing.assert_array_equal(inst > 0, fg)
    a, b = inst[30 * scale, 30 * scale], inst[30 * scale, 51 * scale]
    assert a != b and a > 0 and b > 0
    assert len(np.unique(inst[blob])) == 1  # the ellipse is one object
    # each disc keeps most of itself
    assert (inst[big] == a).mean() > 0.95 and (inst[small] == b).mean() > 0.9


def test_explicit_rules_override_the_defaults() -> None:
    left, right = _disc((41, 60), (20, 20), 10), _disc((41, 60), (20, 37), 10)
    fg = left | right
    assert label_instances(fg, h=0.0).max() == 2
    # the smaller peak rises ~4.7 px above the neck's saddle: h = 6 keeps one marker
    assert label_instances(fg, h=6.0).max() == 1
    # no other peak within 20 px: one marker
    assert label_instances(fg, min_distance=20).max() == 1
    assert label_instances(fg, compactness=0.01).max() == 2


def test_median_radius() -> None:
    labels = np.zeros((20, 20), np.int32)
    labels[:2, :2], labels[5:9, 5:9], labels[10:20, 10:20] = 1, 2, 3  # 4, 16, 100 px
    assert median_radius(labels) == pytest.approx(np.sqrt(16 / np.pi))
    assert median_radius(np.zeros((3, 3), np.int32)) == 0.0
    ball = np.zeros((9, 9, 9), np.int32)
    ball[:2, :2, :2] = 5  # 8 voxels: (3 * 8 / (4 pi)) ** (1/3)
    assert median_radius(ball) == pytest.approx((6 / np.pi) ** (1 / 3))


@pytest.mark.parametrize("prediction", ["true", "dilated", "eroded"])
def test_default_split_does_not_lower_f1_on_nuclei(prediction: str) -> None:
    """On real touching nuclei (../shared/data/nuclei), the default split must not cost F1."""
    import tifffile

    truth = tifffile.imread(shared_data("nuclei") / "labels.tif")
    fg = truth > 0
    fg = {"true": fg, "dilated": ndimage.binary_dilation(fg),
          "eroded": ndimage.binary_erosion(fg)}[prediction]
    split = match_instances(label_instances(fg), truth)["f1"]
    whole = match_instances(label_instances(fg, split_touching=False), truth)["f1"]
    assert split >= whole


def ndimage_count(fg: np.ndarray) -> int:
    from scipy import ndimage

    return int(ndimage.label(fg)[1])
