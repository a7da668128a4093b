"""Predict folds BatchNorm into convolutions by default: same probabilities, model untouched."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from unetkit import build_model
from unetkit.infer.predict import Predictor


def test_folded_prediction_matches_unfolded() -> None:
    torch.manual_seed(0)
    model = build_model("unet", filters=4, depth=2, norm="batch", in_channels=3, classes=1)
    for m in model.modules():  # non-trivial running statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    model.eval()
    image = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    folded = Predictor(model, device="cpu", precision="32")
    plain = Predictor(model, device="cpu", fold_bn=False, precision="32")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.model.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # caller's copy intact
    np.testing.assert_allclose(folded.probabilities(image), plain.probabilities(image),
                               atol=1e-5)
