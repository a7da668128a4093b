"""Partial labels in the metrics and in evaluate: unlabeled pixels (255) are never scored, and
a model trained on partial labels is scored on full masks as the full masks mean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from infer_fixtures import tiny_model
from PIL import Image

from unetkit.infer.evaluate import evaluate
from unetkit.infer.predict import Predictor
from unetkit.scoring import confusion, confusion_metric, summarise

SPARSE_SPEC = {"kind": "index", "class_names": ["background", "foreground"],
               "ignore_index": 255, "value_map": None, "colors": None}


def test_confusion_counts_annotated_pixels_only() -> None:
    truth = np.array([[0, 1, 255], [1, 255, 0]])
    pred = np.array([[0, 0, 1], [1, 1, 1]])
    # annotated: (0,0) 0->0, (0,1) 1->0, (1,0) 1->1, (1,2) 0->1
    expected = np.array([[1, 1], [1, 1]])
    np.testing.assert_array_equal(confusion(pred, truth, 2), expected)
    metric = confusion_metric(2)
    metric.update(torch.from_numpy(pred)[None], torch.from_numpy(truth)[None])
    np.testing.assert_array_equal(metric.compute().numpy(), expected)
    scores = summarise(expected, ["background", "foreground"], binary=True)
    assert scores["pixel_accuracy"] == 0.5 and scores["dice"] == 0.5


def sparse_truth(h: int, w: int, seed: int) -> np.ndarray:
    m = np.full((h, w), 255, np.uint8)
    m[2:6, 3:30] = 0
    m[10 + seed:14 + seed, 5:35] = 1
    m[20:24, 8:20] = 1
    return m


def full_truth(h: int, w: int, seed: int) -> np.ndarray:
    """0/255 binary masks (255 = foreground), as fully labelled sets store them."""
    m = np.zeros((h, w), np.uint8)
    m[8 + seed:18 + seed, :] = 255
    return m


def write_set(root: Path, truths: list[np.ndarray], classes: str | None) -> list[np.ndarray]:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    images = []
    for i, t in enumerate(truths):
        image = np.uint8(np.clip(rng.normal(128, 50, (*t.shape, 3)), 0, 255))
        Image.fromarray(image).save(root / "images" / f"{i}.png")
        Image.fromarray(t).save(root / "masks" / f"{i}.png")
        images.append(image)
    if classes:
        (root / "classes.txt").write_text(classes)
    return images


def hand_scores(model: torch.nn.Module, images: list[np.ndarray], truths: list[np.ndarray]
                ) -> tuple[float, float]:
    """Pixel accuracy and foreground Dice, pooled over the pixels that carry a class (0/1)."""
    predictor = Predictor(model, purpose="evaluate")
    right = scored = tp = fp = fn = 0
    for image, truth in zip(images, truths, strict=True):
        pred = predictor.predict(image)
        keep = truth != 255
        p, t = pred[keep], truth[keep]
        right += int((p == t).sum())
        scored += int(keep.sum())
        tp += int(((p == 1) & (t == 1)).sum())
        fp += int(((p == 1) & (t == 0)).sum())
        fn += int(((p == 0) & (t == 1)).sum())
    return right / scored, 2 * tp / (2 * tp + fp + fn)


def check(metrics: dict, expected: tuple[float, float]) -> None:
    assert metrics["pixel_accuracy"] == pytest.approx(expected[0], abs=1e-9)
    assert metrics["dice"] == pytest.approx(expected[1], abs=1e-9)


def test_evaluate_on_partial_masks_scores_only_the_strokes(tmp_path: Path) -> None:
    truths = [sparse_truth(32, 40, i) for i in range(2)]
    images = write_set(tmp_path / "sparse", truths, "background\nforeground\nunlabeled\n")
    model = tiny_model()
    model.unetkit_meta["mask_spec"] = dict(SPARSE_SPEC)
    result = evaluate(model, tmp_path / "sparse", split="all")
    check(result.metrics, hand_scores(model, images, truths))


def test_partial_label_model_on_full_masks_reads_255_as_foreground(tmp_path: Path) -> None:
    """Read as the model's own index/255 masks, every foreground pixel would be dropped."""
    raw = [full_truth(32, 40, i) for i in range(2)]
    images = write_set(tmp_path / "full", raw, None)
    model = tiny_model()
    model.unetkit_meta["mask_spec"] = dict(SPARSE_SPEC)
    result = evaluate(model, tmp_path / "full", split="all")
    check(result.metrics, hand_scores(model, images, [(t > 0).astype(np.uint8) for t in raw]))


def test_full_label_model_on_partial_masks_does_not_score_255(tmp_path: Path) -> None:
    truths = [sparse_truth(32, 40, i) for i in range(2)]
    images = write_set(tmp_path / "sparse", truths, "background\nforeground\nunlabeled\n")
    model = tiny_model()  # trained on binary masks: its own spec reads 255 as foreground
    result = evaluate(model, tmp_path / "sparse", split="all")
    check(result.metrics, hand_scores(model, images, truths))
