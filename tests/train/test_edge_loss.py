"""The edge-aware smoothness term for partial labels: zero where it should be, larger for
boundaries off the image's edges, on by default only for partial masks."""

from __future__ import annotations

import math

import torch

from unetkit.train.edge_loss import annotated_share, edge_aware_smoothness, edge_weight_for


def _step_image(width: int = 16, edge: int = 8) -> torch.Tensor:
    img = torch.zeros(1, 1, 8, width)
    img[..., edge:] = 4.0  # a strong edge: 4 standard deviations
    return img


def _logits_split_at(column: int, width: int = 16) -> torch.Tensor:
    logits = torch.full((1, 1, 8, width), -20.0)
    logits[..., column:] = 20.0
    return logits


def test_constant_prediction_costs_nothing() -> None:
    assert float(edge_aware_smoothness(torch.full((1, 1, 8, 16), 20.0), _step_image())) < 1e-6


def test_a_boundary_on_the_edge_is_cheaper_than_one_beside_it() -> None:
    img = _step_image()
    on_edge = float(edge_aware_smoothness(_logits_split_at(8), img))
    off_edge = float(edge_aware_smoothness(_logits_split_at(5), img))
    assert on_edge < 1e-6 < off_edge


def test_one_pair_by_hand() -> None:
    """radius 1 on a 1x2 image: only the pair (0,0)-(0,1) exists; it disagrees fully and the
    intensities differ by 1: k = exp(-1/(2*0.5^2) - 1/(2*2^2))."""
    img = torch.tensor([[[[0.0, 1.0]]]])
    logits = torch.tensor([[[[-30.0, 30.0]]]])
    got = float(edge_aware_smoothness(logits, img, radius=1))
    assert math.isclose(got, math.exp(-2.0 - 0.125), rel_tol=1e-4)


def test_multiclass_and_gradient_flow() -> None:
    logits = torch.randn(2, 3, 12, 12, requires_grad=True)
    loss = edge_aware_smoothness(logits, torch.randn(2, 3, 12, 12))
    loss.backward()
    assert loss.item() > 0 and logits.grad is not None and logits.grad.abs().sum() > 0


class _Cache:
    def __init__(self, masks: list) -> None:
        self.masks = masks

    def mask(self, i: int):
        return self.masks[i]


def test_on_by_default_only_for_partial_masks() -> None:
    import numpy as np

    sparse = np.full((10, 10), 255, np.uint8)
    sparse[0, :5] = 1
    full = np.ones((10, 10), np.uint8)
    assert annotated_share(_Cache([sparse, full]), [0]) == 0.05
    assert annotated_share(_Cache([sparse, full]), [0, 1]) == 105 / 200
    assert edge_weight_for(0.05, None) > 0
    assert edge_weight_for(0.9, None) == 0
    assert edge_weight_for(0.05, 0.0) == 0 and edge_weight_for(0.9, 2.0) == 2.0
