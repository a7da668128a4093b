"""Partial labels in every loss: unlabeled pixels (255) take part in no term and no denominator.

The reference for each case is the same loss on a target holding only the annotated pixels
(gathered into one row), and a hand formula of each term on those pixels.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unetkit.train.losses import LOSSES, build_loss

NAMES = [n for n in LOSSES if n != "auto"]
BINARY_ONLY = {"bce", "bce-dice"}


def sparse_batch(k: int, seed: int = 0, annotated: float = 0.1
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits B x K x H x W, a target with ~`annotated` of its pixels labelled (rest 255), and
    a positive weight map."""
    g = torch.Generator().manual_seed(seed)
    b, h, w = 2, 12, 10
    logits = torch.randn(b, k, h, w, generator=g) * 2
    target = torch.randint(0, max(k, 2), (b, h, w), generator=g)
    target[torch.rand(b, h, w, generator=g) > annotated] = 255
    target[0, 0, :2] = torch.tensor([0, 1])  # both images keep some annotated pixels
    target[1, 0, :2] = torch.tensor([1, 0])
    weights = torch.rand(b, h, w, generator=g) * 3 + 0.5
    return logits, target, weights


def annotated_only(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The annotated pixels of all images as one 1 x K x 1 x N image."""
    keep = target != 255
    return (logits.permute(1, 0, 2, 3)[:, keep][None, :, None, :],
            target[keep][None, None, :], weights[keep][None, None, :])


def cases() -> list[tuple[str, int]]:
    return [(n, k) for n in NAMES for k in (1, 3) if not (n in BINARY_ONLY and k == 3)]


@pytest.mark.parametrize(("name", "k"), cases())
def test_loss_equals_the_loss_on_the_annotated_pixels_alone(name: str, k: int) -> None:
    logits, target, weights = sparse_batch(k)
    loss = build_loss(name, k)
    full = loss(logits, target, weights)
    assert torch.isfinite(full)
    assert full == pytest.approx(float(loss(*annotated_only(logits, target, weights))),
                                 rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(("name", "k"), cases())
def test_unlabeled_pixels_get_zero_gradient(name: str, k: int) -> None:
    logits, target, weights = sparse_batch(k, seed=1)
    logits.requires_grad_(True)
    build_loss(name, k)(logits, target, weights).backward()
    ignored = (target == 255)[:, None].expand_as(logits)
    assert ignored.float().mean() > 0.7  # the case is a sparse one
    assert (logits.grad[ignored] == 0).all()
    assert logits.grad[~ignored].abs().sum() > 0  # the annotated pixels do learn


def test_per_image_dice_over_annotated_pixels() -> None:
    logits, target, weights = sparse_batch(3, seed=2)
    loss = build_loss("dice", 3, dice_per_image=True)
    per_image = [float(loss(*annotated_only(logits[i:i + 1], target[i:i + 1],
                                            weights[i:i + 1]))) for i in range(2)]
    assert float(loss(logits, target)) == pytest.approx(sum(per_image) / 2, rel=1e-5)


def _soft_scores(p: torch.Tensor, g: torch.Tensor, alpha: float = 0.3, beta: float = 0.7
                 ) -> dict[str, torch.Tensor]:
    tp, fp, fn = (p * g).sum(), (p * (1 - g)).sum(), ((1 - p) * g).sum()
    return {"dice": (2 * tp + 1) / (2 * tp + fp + fn + 1),
            "jaccard": (tp + 1) / (tp + fp + fn + 1),
            "tversky": (tp + 1) / (tp + alpha * fp + beta * fn + 1)}


@pytest.mark.parametrize("k", [1, 3])
def test_terms_by_hand_on_the_annotated_pixels(k: int) -> None:
    logits, target, weights = sparse_batch(k, seed=3)
    keep = target != 255
    x = logits.permute(0, 2, 3, 1)[keep]  # N x K, annotated pixels only
    y = target[keep]
    w = weights[keep]
    if k == 1:
        ce_pixel = F.binary_cross_entropy_with_logits(x[:, 0], y.float(), reduction="none")
        probs = torch.stack([1 - torch.sigmoid(x[:, 0]), torch.sigmoid(x[:, 0])], 1)
        overlap_classes = [1]  # binary: the foreground only
    else:
        ce_pixel = F.cross_entropy(x, y, reduction="none")
        probs = torch.softmax(x, 1)
        overlap_classes = list(range(k))
    pt = probs.gather(1, y[:, None])[:, 0]
    onehot = F.one_hot(y, max(k, 2)).float()
    scores = [_soft_scores(probs[:, c], onehot[:, c]) for c in overlap_classes]
    expected = {
        "ce": ce_pixel.mean(),
        "weighted-ce": (w * ce_pixel).sum() / w.sum(),
        "focal": ((1 - pt) ** 2 * ce_pixel).mean(),
        **{t: 1 - torch.stack([s[t] for s in scores]).mean()
           for t in ("dice", "jaccard", "tversky")},
    }
    expected["ce-dice"] = expected["ce"] + expected["dice"]
    for name, value in expected.items():
        name = {"ce": "bce", "ce-dice": "bce-dice"}.get(name, name) if k == 1 else name
        got = build_loss(name, k)(logits, target, weights if name == "weighted-ce" else None)
        assert float(got) == pytest.approx(float(value), rel=1e-5), name


def test_class_weights_count_annotated_pixels_only() -> None:
    logits, target, _ = sparse_batch(3, seed=4)
    got = build_loss("ce", 3, class_weights=[1.0, 2.0, 5.0])(logits, target)
    reference = F.cross_entropy(logits, target, weight=torch.tensor([1.0, 2.0, 5.0]),
                                ignore_index=255)
    assert float(got) == pytest.approx(float(reference), rel=1e-5)
