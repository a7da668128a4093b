"""Pixel metrics on tiny arrays scored by hand in the comments."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from unetkit.errors import UnetkitError
from unetkit.infer.seg_metrics import confusion, hd95, per_image_scores, summarise

# binary, 2x3, one ignored pixel (predicted 1: it must not count as a false positive)
TRUTH = np.array([[1, 1, 0], [0, 1, 255]], dtype=np.uint8)
PRED = np.array([[1, 0, 0], [1, 1, 1]], dtype=np.uint8)
# (0,0) TP  (0,1) FN  (0,2) TN  (1,0) FP  (1,1) TP  (1,2) ignored
# class 1: tp 2, fp 1, fn 1 -> iou 2/4 = 1/2, dice 4/6 = 2/3
# class 0: tp 1, fp 1, fn 1 -> iou 1/3,       dice 2/4 = 1/2
# pixel accuracy 3/5; mean iou (1/3 + 1/2)/2 = 5/12; mean dice (1/2 + 2/3)/2 = 7/12


def test_confusion_hand_made_and_ignore() -> None:
    conf = confusion(PRED, TRUTH, 2)
    assert conf.dtype == np.int64
    np.testing.assert_array_equal(conf, [[1, 1], [1, 2]])  # rows truth, columns prediction
    # a different ignore value: now 255 is a class out of range
    with pytest.raises(UnetkitError, match="class 255"):
        confusion(PRED, TRUTH, 2, ignore=7)


def test_summarise_binary_exact_shape() -> None:
    s = summarise(confusion(PRED, TRUTH, 2), ["background", "car"], binary=True)
    assert set(s) == {"pixel_accuracy", "mean_iou", "mean_dice", "per_class", "dice", "iou",
                      "micro_iou", "micro_dice", "mean_iou_foreground", "mean_dice_foreground",
                      "micro_iou_foreground", "micro_dice_foreground", "confusion"}
    assert s["confusion"] == confusion(PRED, TRUTH, 2).tolist()
    # binary: foreground macro = foreground micro = the car class; micro dice = accuracy
    for key in ("mean_iou_foreground", "micro_iou_foreground"):
        assert s[key] == pytest.approx(1 / 2)
    for key in ("mean_dice_foreground", "micro_dice_foreground"):
        assert s[key] == pytest.approx(2 / 3)
    assert s["micro_dice"] == pytest.approx(3 / 5)  # 2*3 / (2*3 + 2 + 2)
    assert s["micro_iou"] == pytest.approx(3 / 7)  # 3 / (3 + 2 + 2)
    assert s["pixel_accuracy"] == pytest.approx(3 / 5)
    assert s["mean_iou"] == pytest.approx(5 / 12)
    assert s["mean_dice"] == pytest.approx(7 / 12)
    assert s["per_class"]["car"] == pytest.approx({"iou": 1 / 2, "dice": 2 / 3})
    assert s["per_class"]["background"] == pytest.approx({"iou": 1 / 3, "dice": 1 / 2})
    assert (s["dice"], s["iou"]) == (s["per_class"]["car"]["dice"], s["per_class"]["car"]["iou"])
    assert json.loads(json.dumps(s)) == s  # plain floats, valid JSON


# 3 classes: truth [[0,1,1],[2,2,0]], pred [[0,1,2],[2,0,0]]
# class 0: tp 2 ((0,0),(1,2)), fp 1 ((1,1)), fn 0    -> iou 2/3, dice 4/5
# class 1: tp 1 ((0,1)), fp 0, fn 1 ((0,2))          -> iou 1/2, dice 2/3
# class 2: tp 1 ((1,0)), fp 1 ((0,2)), fn 1 ((1,1))  -> iou 1/3, dice 1/2
MC_TRUTH = np.array([[0, 1, 1], [2, 2, 0]])
MC_PRED = np.array([[0, 1, 2], [2, 0, 0]])


def test_multiclass_summary_and_pooling() -> None:
    conf = confusion(MC_PRED, MC_TRUTH, 3)
    s = summarise(conf, ["bg", "a", "b"], binary=False)
    assert "dice" not in s and "iou" not in s
    assert s["pixel_accuracy"] == pytest.approx(4 / 6)
    assert s["mean_iou"] == pytest.approx((2 / 3 + 1 / 2 + 1 / 3) / 3)
    assert s["mean_dice"] == pytest.approx((4 / 5 + 2 / 3 + 1 / 2) / 3)
    assert s["mean_iou_foreground"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert s["mean_dice_foreground"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # micro over classes 1-2: tp 1+1, fp 0+1, fn 1+1
    assert s["micro_iou_foreground"] == pytest.approx(2 / 5)
    assert s["micro_dice_foreground"] == pytest.approx(4 / 7)
    # micro over all classes: tp 4, fp 2, fn 2
    assert s["micro_iou"] == pytest.approx(4 / 8)
    assert s["micro_dice"] == pytest.approx(s["pixel_accuracy"])
    # pooling: two copies of the image give the same scores, a matrix of twice the counts
    twice = confusion(np.stack([MC_PRED] * 2), np.stack([MC_TRUTH] * 2), 3)
    np.testing.assert_array_equal(twice, 2 * conf)
    doubled = summarise(twice, ["bg", "a", "b"], binary=False)
    assert doubled.pop("confusion") == (2 * np.asarray(s.pop("confusion"))).tolist()
    assert doubled == s  # same rationals, same floats


def test_summarise_absent_class_and_errors() -> None:
    conf = np.array([[3, 0, 0], [0, 1, 0], [0, 0, 0]])  # class 2 never seen nor predicted
    s = summarise(conf, ["bg", "a", "b"], binary=False)
    assert s["per_class"]["b"] == {"iou": 1.0, "dice": 1.0}
    with pytest.raises(UnetkitError, match="no pixels"):
        summarise(np.zeros((2, 2), np.int64), ["bg", "fg"], binary=True)
    with pytest.raises(UnetkitError, match="class names"):
        summarise(conf, ["bg", "a"], binary=False)


def test_per_image_scores() -> None:
    r = per_image_scores(PRED, TRUTH, 2)
    assert r == pytest.approx({"dice": 2 / 3, "iou": 1 / 2, "pixel_accuracy": 3 / 5})
    # multi-class: mean over classes 1 and 2 only
    r = per_image_scores(MC_PRED, MC_TRUTH, 3)
    assert r == pytest.approx({"dice": (2 / 3 + 1 / 2) / 2, "iou": (1 / 2 + 1 / 3) / 2,
                               "pixel_accuracy": 4 / 6})


def test_empty_mask_rule() -> None:
    empty = np.zeros((2, 3), np.uint8)
    assert per_image_scores(empty, empty, 2) == {"dice": 1.0, "iou": 1.0, "pixel_accuracy": 1.0}
    r = per_image_scores(PRED, empty, 2)  # predicted 4 px where there are none
    assert (r["dice"], r["iou"]) == (0.0, 0.0)
    # class 2 absent from both: it scores 1.0; class 1: tp 1, fn 1 -> dice 2/3, iou 1/2
    r = per_image_scores(np.array([[0, 1], [0, 0]]), np.array([[0, 1], [1, 0]]), 3)
    assert r["dice"] == pytest.approx((2 / 3 + 1) / 2)
    assert r["iou"] == pytest.approx((1 / 2 + 1) / 2)
    all_ignored = np.full((2, 3), 255, np.uint8)
    assert per_image_scores(PRED, all_ignored, 2)["pixel_accuracy"] == 1.0


def test_shape_and_range_errors() -> None:
    with pytest.raises(UnetkitError, match="does not match"):
        confusion(PRED, TRUTH[:, :2], 2)
    with pytest.raises(UnetkitError, match="prediction has class 3"):
        confusion(np.array([[3]]), np.array([[0]]), 2)


def test_hd95() -> None:
    one = np.zeros((1, 5), bool)
    other = one.copy()
    one[0, 0] = other[0, 3] = True
    assert hd95(one, other) == 3.0
    truth = np.zeros((20, 20), np.uint8)
    truth[2:7, 2:7] = 1  # 5x5 square: 16 boundary pixels
    assert hd95(truth, truth) == 0.0
    pred = truth.copy()
    pred[4, 16] = 1  # an outlier 10 px from the square's edge pixel (4, 6)
    # pred -> truth distances: sixteen 0s and one 10; 95th percentile (linear) sits at
    # rank 0.95 * 16 = 15.2, between 0 and 10 -> 2.0. truth -> pred: all 0. Plain max: 10.
    assert hd95(pred, truth) == pytest.approx(2.0)
    assert hd95(truth, pred) == pytest.approx(2.0)  # symmetric
    assert math.isnan(hd95(np.zeros_like(truth), truth))
    assert math.isnan(hd95(truth, np.zeros_like(truth)))
