"""The input preparation both engines share, and the one scale rule it follows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit.data.loading import scaled_size as loading_scaled_size
from unetkit.data.scale import parse_stretch, scaled_size, stretch_scale
from unetkit.errors import UnetkitError, UsageError
from unetkit.infer import preprocess


def test_scale_rule_has_one_parser() -> None:
    assert stretch_scale([64, 80]) == "stretch:64x80"
    assert parse_stretch("stretch:64x80") == (64, 80) and parse_stretch(0.5) is None
    assert scaled_size((100, 51), 0.5) == (50, 26) and scaled_size((1, 1), 0.1) == (1, 1)
    assert scaled_size((100, 51), "stretch:64x80") == (64, 80)
    assert loading_scaled_size is scaled_size  # the training cache uses the same rule
    with pytest.raises(UsageError, match="stretch:HxW"):
        parse_stretch("stretch:64")


def test_working_size_follows_the_artifact_scale() -> None:
    assert preprocess.working_size({}, 30, 41) == (30, 41)
    assert preprocess.working_size({"scale": 0.5}, 30, 41) == (15, 20)
    assert preprocess.working_size({"scale": "stretch:16x24"}, 30, 41) == (16, 24)


def test_model_input_is_normalised_at_the_working_size() -> None:
    meta = {"in_channels": 3, "scale": 0.5,
            "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    image = np.full((20, 30, 3), 255, dtype=np.uint8)
    x = preprocess.model_input(image, meta)
    assert x.shape == (1, 3, 10, 15) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full_like(x, 2.0))  # (1 - 0.5) / 0.25
    grey = preprocess.prepare_image(np.zeros((5, 6), dtype=np.uint8), 3, "g")
    assert grey.shape == (3, 5, 6) and grey.dtype == torch.uint8
    with pytest.raises(UnetkitError, match="has 2 channels"):
        preprocess.prepare_image(np.zeros((5, 6, 2), dtype=np.uint8), 3, "two.png")
