"""3D U-Net: shapes, a hand parameter count, gradients and the artifact round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unetkit.errors import UsageError
from unetkit.models.artifact import load_model, save_model
from unetkit.models.registry import build_model, count_parameters

TINY = {"filters": 4, "depth": 2, "norm": "none"}


def test_hand_counted_parameters() -> None:
    # 3x3x3 convs (27 weights per in/out pair + bias), 2x2x2 up-convs (8 per pair + bias)
    down = (27 * 1 * 4 + 4) + (27 * 4 * 4 + 4) + (27 * 4 * 8 + 8) + (27 * 8 * 8 + 8)
    bottom = (27 * 8 * 16 + 16) + (27 * 16 * 16 + 16)
    up = ((8 * 16 * 8 + 8) + (27 * 16 * 8 + 8) + (27 * 8 * 8 + 8)
          + (8 * 8 * 4 + 4) + (27 * 8 * 4 + 4) + (27 * 4 * 4 + 4))
    head = 4 * 1 + 1
    assert count_parameters(build_model("unet3d", **TINY)) == down + bottom + up + head == 21_357


@pytest.mark.parametrize("norm", ["none", "batch", "group", "instance"])
def test_shapes_any_size(norm: str) -> None:
    model = build_model("unet3d", filters=4, depth=2, norm=norm, in_channels=2, classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 2, 10, 12, 14)).shape == (1, 3, 10, 12, 14)


def test_gradients_reach_every_parameter() -> None:
    model = build_model("unet3d", filters=4, depth=2).train()
    x = torch.randn(2, 1, 8, 8, 8)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        model(x), (x > 0).float())
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_rejects_2d_input() -> None:
    with pytest.raises(UsageError, match="D x H x W"):
        build_model("unet3d", **TINY)(torch.randn(1, 1, 8, 8))


def test_artifact_round_trip(tmp_path: Path) -> None:
    model = build_model("unet3d", filters=4, depth=2, norm="batch")
    model.train()(torch.randn(2, 1, 8, 8, 8))  # move the BatchNorm statistics off their init
    model.eval()
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    x = torch.randn(1, 1, 9, 8, 7)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.unetkit_arch == model.unetkit_arch
