"""Post-processing on hand-made masks whose answers can be read off the arrays."""

from __future__ import annotations

import numpy as np

from unetkit.infer.postprocess import keep_largest, label_instances, remove_small

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


def ndimage_count(fg: np.ndarray) -> int:
    from scipy import ndimage

    return int(ndimage.label(fg)[1])
