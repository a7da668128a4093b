"""The scoring core against hand-worked numbers, and its torch and numpy paths against each
other: training and `evaluate` must report the same scores for the same masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit import scoring
from unetkit.errors import UnetkitError
from unetkit.scoring import (
    IGNORE,
    class_scores,
    confusion,
    confusion_metric,
    micro_scores,
    per_image_scores,
    pixel_accuracy,
    predictions,
    scores_from_confusion,
    summarise,
)

# 3 classes; class 2 appears in neither truth nor prediction (the ignored pixel is predicted
# 2: it must not count, or class 2 would have a false positive and no longer be absent)
TRUTH = np.array([[0, 0, 1, 1], [0, 1, 1, IGNORE]], dtype=np.uint8)
PRED = np.array([[0, 1, 1, 0], [0, 1, 1, 2]], dtype=np.uint8)
# (truth, pred): (0,0) (0,1) (1,1) (1,0) / (0,0) (1,1) (1,1) ignored
CONF = [[2, 1, 0],   # truth 0: 2 right, 1 called 1
        [1, 3, 0],   # truth 1: 3 right, 1 called 0
        [0, 0, 0]]   # truth 2: none
# class 0: tp 2, fp 1, fn 1 -> iou 2/4, dice 4/6
# class 1: tp 3, fp 1, fn 1 -> iou 3/5, dice 6/8
# class 2: tp = fp = fn = 0 -> 1.0 and 1.0 (the empty-mask rule)
IOU = [1 / 2, 3 / 5, 1.0]
DICE = [2 / 3, 3 / 4, 1.0]


def test_confusion_by_hand_numpy_and_torch() -> None:
    conf = confusion(PRED, TRUTH, 3)
    assert conf.dtype == np.int64
    np.testing.assert_array_equal(conf, CONF)
    metric = confusion_metric(3)
    metric.update(torch.from_numpy(PRED).long()[None], torch.from_numpy(TRUTH).long()[None])
    counted = metric.compute()
    assert counted.dtype == torch.int64
    np.testing.assert_array_equal(counted.numpy(), CONF)
    # another ignore value: 255 is then a class out of range, 9 is skipped
    with pytest.raises(UnetkitError, match="class 255"):
        confusion(PRED, TRUTH, 3, ignore=9)
    np.testing.assert_array_equal(confusion(PRED, np.where(TRUTH == IGNORE, 9, TRUTH), 3,
                                            ignore=9), CONF)


def test_reductions_by_hand() -> None:
    iou, dice = class_scores(np.array(CONF))
    np.testing.assert_allclose(iou, IOU)
    np.testing.assert_allclose(dice, DICE)
    assert pixel_accuracy(np.array(CONF)) == pytest.approx(5 / 7)
    # micro over all classes: tp 5, fp 2, fn 2; over classes 1-2: tp 3, fp 1, fn 1
    assert micro_scores(np.array(CONF), [0, 1, 2]) == pytest.approx((5 / 9, 5 / 7))
    assert micro_scores(np.array(CONF), [1, 2]) == pytest.approx((3 / 5, 3 / 4))
    assert micro_scores(np.array(CONF), [2]) == (1.0, 1.0)  # the empty-mask rule, pooled
    s = summarise(np.array(CONF), ["bg", "a", "b"], binary=False)
    per_class = s.pop("per_class")
    assert s.pop("confusion") == CONF  # rows truth, columns prediction, as given
    assert s == pytest.approx({
        "pixel_accuracy": 5 / 7, "mean_iou": (1 / 2 + 3 / 5 + 1) / 3,
        "mean_dice": (2 / 3 + 3 / 4 + 1) / 3, "micro_iou": 5 / 9, "micro_dice": 5 / 7,
        "mean_iou_foreground": (3 / 5 + 1) / 2, "mean_dice_foreground": (3 / 4 + 1) / 2,
        "micro_iou_foreground": 3 / 5, "micro_dice_foreground": 3 / 4})
    assert per_class["b"] == {"iou": 1.0, "dice": 1.0}
    assert per_class["a"] == pytest.approx({"iou": 3 / 5, "dice": 3 / 4})
    assert per_class["bg"] == pytest.approx({"iou": 1 / 2, "dice": 2 / 3})
    r = per_image_scores(PRED, TRUTH, 3)  # foreground classes 1 and 2 only
    assert r == pytest.approx({"dice": (3 / 4 + 1) / 2, "iou": (3 / 5 + 1) / 2,
                               "pixel_accuracy": 5 / 7})


def test_nothing_to_score() -> None:
    empty = np.zeros((3, 3), np.int64)
    iou, dice = class_scores(empty)
    assert iou.tolist() == dice.tolist() == [1.0, 1.0, 1.0]
    assert pixel_accuracy(empty) == 1.0
    assert scores_from_confusion(torch.zeros(3, 3, dtype=torch.long))["mean_dice"] == 1.0
    with pytest.raises(UnetkitError, match="no pixels"):
        summarise(empty, ["bg", "a", "b"], binary=False)
    with pytest.raises(UnetkitError, match="square"):
        summarise(np.zeros((2, 3), np.int64), ["bg", "a"], binary=False)


def _random_batches(classes: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(logits, truth) batches of uneven sizes; about 10% of the truth pixels ignored."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n, h, w in ((2, 17, 23), (3, 8, 8), (1, 31, 5)):
        logits = torch.randn(n, 1 if classes == 2 else classes, h, w, generator=g)
        truth = torch.randint(0, classes, (n, h, w), generator=g)
        truth[torch.rand(n, h, w, generator=g) < 0.1] = IGNORE
        out.append((logits, truth))
    return out


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_training_and_evaluate_paths_give_identical_numbers(classes: int) -> None:
    batches = _random_batches(classes, seed=classes)
    metric = confusion_metric(classes)  # training: torch tensors, per step
    total = np.zeros((classes, classes), np.int64)  # evaluate: numpy, per image
    per_image = []
    for logits, truth in batches:
        metric.update(predictions(logits), truth)
        for pred, t in zip(predictions(logits).numpy(), truth.numpy(), strict=True):
            total += confusion(pred, t, classes)
            per_image.append(per_image_scores(pred, t, classes))
    counted = metric.compute()
    np.testing.assert_array_equal(counted.numpy(), total)
    train, evaluate = scores_from_confusion(counted), scores_from_confusion(total)
    for key in ("iou", "dice"):
        assert train[key].tolist() == evaluate[key].tolist()
    for key in ("mean_iou", "mean_dice", "pixel_accuracy"):
        assert train[key] == evaluate[key]
    names = [str(i) for i in range(classes)]
    assert summarise(counted, names, classes == 2) == summarise(total, names, classes == 2)
    # one image through the torch path scores as evaluate's per-image row
    logits, truth = batches[0]
    single = confusion_metric(classes)
    single.update(predictions(logits[:1]), truth[:1])
    iou, dice = class_scores(single.compute())
    assert (float(dice[1:].mean()), float(iou[1:].mean())) == \
        (per_image[0]["dice"], per_image[0]["iou"])


def test_processes_sum_their_matrices() -> None:
    """DDP: each process counts its own pixels; torchmetrics sums the states (the reduction
    merge_state applies is the one it applies across processes)."""
    batches = _random_batches(3, seed=7)
    whole, first, second = confusion_metric(3), confusion_metric(3), confusion_metric(3)
    for i, (logits, truth) in enumerate(batches):
        whole.update(predictions(logits), truth)
        (first if i % 2 else second).update(predictions(logits), truth)
    first.merge_state(second)
    np.testing.assert_array_equal(first.compute().numpy(), whole.compute().numpy())


def test_binary_logit_threshold() -> None:
    logits = torch.tensor([[[[-0.5, 0.0, 0.5]]]])
    assert predictions(logits).tolist() == [[[0, 0, 1]]]
    assert predictions(torch.tensor([[[[0.1]], [[0.3]], [[0.2]]]])).tolist() == [[[1]]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matrix_scores_as_cpu() -> None:
    batches = _random_batches(3, seed=3)
    cpu, gpu = confusion_metric(3), confusion_metric(3).to("cuda")
    for logits, truth in batches:
        cpu.update(predictions(logits), truth)
        gpu.update(predictions(logits.cuda()), truth.cuda())
    assert summarise(gpu.compute(), ["a", "b", "c"], False) == \
        summarise(cpu.compute(), ["a", "b", "c"], False)


def test_one_core_everywhere() -> None:
    """Training's and evaluate's names are the core's objects, not copies."""
    from unetkit.data.transforms import IGNORE as DATA_IGNORE
    from unetkit.infer import seg_metrics
    from unetkit.train import metrics

    assert IGNORE == DATA_IGNORE
    assert metrics.scores_from_confusion is scoring.scores_from_confusion
    assert metrics.confusion_metric is scoring.confusion_metric
    assert metrics.predictions is scoring.predictions
    for name in ("confusion", "summarise", "per_image_scores"):
        assert getattr(seg_metrics, name) is getattr(scoring, name)
