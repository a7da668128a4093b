"""Instance matching on hand-made label images with answers worked out in the comments."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.errors import UnetkitError
from unetkit.infer.instance_metrics import match_instances

TRUTH = np.array([
    [1, 1, 0, 0, 0, 0],
    [1, 1, 0, 0, 2, 2],
    [0, 0, 0, 0, 2, 2],
    [3, 0, 0, 0, 0, 0],
])
PRED = np.array([
    [5, 5, 0, 0, 0, 0],
    [5, 5, 5, 0, 7, 0],
    [0, 0, 0, 0, 0, 0],
    [0, 0, 0, 9, 9, 0],
], dtype=np.uint16)
# pred 5 (5 px) vs truth 1 (4 px): 4 shared -> IoU 4/5 = 0.8, a match
# pred 7 (1 px) vs truth 2 (4 px): 1 shared -> IoU 1/4 = 0.25
# pred 9 overlaps nothing; truth 3 is missed


def test_hand_made_default_threshold() -> None:
    # tp 1, fp 2 (7, 9), fn 2 (2, 3): precision = recall = 1/3, f1 = 2/(2+2+2) = 1/3
    r = match_instances(PRED, TRUTH)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 2, 2)
    assert r["precision"] == pytest.approx(1 / 3)
    assert r["recall"] == pytest.approx(1 / 3)
    assert r["f1"] == pytest.approx(1 / 3)


def test_hand_made_low_threshold() -> None:
    # at 0.2 pred 7 matches truth 2 too: tp 2, fp 1, fn 1 -> all 2/3
    r = match_instances(PRED, TRUTH, iou_threshold=0.2)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 1, 1)
    assert r["f1"] == pytest.approx(2 / 3)


def test_threshold_is_strict() -> None:
    pred, truth = np.array([[1, 1]]), np.array([[1, 0]])  # IoU exactly 1/2
    assert match_instances(pred, truth)["tp"] == 0
    assert match_instances(pred, truth, iou_threshold=0.49)["tp"] == 1


def test_one_to_one_below_half() -> None:
    # one prediction covering two true objects, IoU 0.5 with each: only one may match
    pred, truth = np.array([[1, 1, 1, 1]]), np.array([[1, 1, 2, 2]])
    r = match_instances(pred, truth, iou_threshold=0.3)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 0, 1)
    assert r["precision"] == 1.0 and r["recall"] == 0.5


def test_label_values_do_not_matter() -> None:
    relabelled = np.select([TRUTH == 1, TRUTH == 2, TRUTH == 3], [70000, 12, 999], 0)
    assert match_instances(PRED, relabelled) == match_instances(PRED, TRUTH)
    assert match_instances(TRUTH, TRUTH) == {"precision": 1.0, "recall": 1.0, "f1": 1.0,
                                             "tp": 3, "fp": 0, "fn": 0}


def test_empty_sides() -> None:
    empty = np.zeros_like(TRUTH)
    assert match_instances(empty, empty) == {"precision": 1.0, "recall": 1.0, "f1": 1.0,
                                             "tp": 0, "fp": 0, "fn": 0}
    r = match_instances(empty, TRUTH)
    assert (r["precision"], r["recall"], r["f1"], r["fn"]) == (1.0, 0.0, 0.0, 3)
    r = match_instances(TRUTH, empty)
    assert (r["precision"], r["recall"], r["f1"], r["fp"]) == (0.0, 1.0, 0.0, 3)


def test_shape_mismatch() -> None:
    with pytest.raises(UnetkitError, match="does not match"):
        match_instances(PRED, TRUTH[:, :5])
