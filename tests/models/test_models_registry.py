"""Every registered model: same-size output, channels_last, and a bit-exact artifact round trip."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torchvision.models import mobilenet_v2

from unetkit.errors import UnetkitError
from unetkit.models.artifact import CONFIG_NAME, WEIGHTS_NAME, load_model, save_model
from unetkit.models.registry import build_model, get_entry, model_names

SMALL: dict[str, dict[str, Any]] = {
    "unet": {"filters": 4, "depth": 2},
    "unet-bn": {"filters": 4, "depth": 2, "stem": 2},  # also covers the space-to-depth stem
    "unet1024": {"filters": 4, "depth": 3},
    "unet-valid": {"filters": 4, "depth": 2},
    "mobilenet_v2-unet": {"encoder_weights": None},
    "timm-unet": {"encoder": "mobilenetv2_100", "encoder_weights": None},
    "unet3d": {"filters": 4, "depth": 2},
}
INPUT_SHAPES = {"unet-valid": (2, 3, 44, 52), "unet3d": (2, 1, 8, 12, 10)}
SAME_PADDING_2D = [n for n in model_names() if n not in INPUT_SHAPES]


def small_model(name: str) -> torch.nn.Module:
    options = SMALL.get(name)
    if options is None:  # a model added later: keep it small where it allows
        accepted = inspect.signature(get_entry(name).builder).parameters
        options = {k: v for k, v in {"filters": 8, "encoder_weights": None}.items()
                   if k in accepted}
    return build_model(name, **options)


def test_every_entry_has_a_description_and_reference() -> None:
    for name in model_names():
        entry = get_entry(name)
        assert entry.description and "\n" not in entry.description
        assert {"in_channels", "classes"} <= set(entry.reference)


@pytest.mark.parametrize("name", SAME_PADDING_2D)
def test_same_size_output_and_channels_last(name: str) -> None:
    model = small_model(name).eval()
    x = torch.randn(1, 3, 250, 375)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 1, 250, 375)
        torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last)), out,
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", model_names())
def test_artifact_round_trip_is_bit_exact(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = small_model(name)
    shape = INPUT_SHAPES.get(name, (2, 3, 64, 64))
    model.train()(torch.randn(shape))  # BatchNorm statistics away from their initial values
    model.eval()
    save_model(model, tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    assert not loaded.training
    assert loaded.unetkit_arch == json.loads(json.dumps(model.unetkit_arch))
    x = torch.randn(shape)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_pretrained_artifact_loads_without_the_pretrained_file(
        tmp_path: Path, weight_caches: dict[str, Path]) -> None:
    weight_caches["checkpoints"].mkdir(parents=True)
    cached = weight_caches["checkpoints"] / "mobilenet_v2-b0353104.pth"
    torch.save(mobilenet_v2(weights=None).state_dict(), cached)
    model = build_model("mobilenet_v2-unet").eval()
    save_model(model, tmp_path / "model")
    cached.unlink()
    loaded = load_model(tmp_path / "model")
    config = json.loads((tmp_path / "model" / CONFIG_NAME).read_text())
    assert config["architecture"]["options"]["encoder_weights"] == "imagenet"
    assert config["normalization"] == model.input_normalization
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_damaged_artifact_weights(tmp_path: Path, one_sentence) -> None:
    save_model(small_model("unet"), tmp_path / "model")
    (tmp_path / "model" / WEIGHTS_NAME).write_bytes(b"\x00" * 20)
    with pytest.raises(UnetkitError, match="is damaged") as info:
        load_model(tmp_path / "model")
    assert str(tmp_path / "model" / WEIGHTS_NAME) in str(info.value)
    one_sentence(str(info.value))


@pytest.mark.parametrize("change", [{"filters": 8}, {"depth": 3}])
def test_mismatched_artifact_weights(tmp_path: Path, change: dict, one_sentence) -> None:
    save_model(small_model("unet"), tmp_path / "model")
    config_path = tmp_path / "model" / CONFIG_NAME
    config = json.loads(config_path.read_text())
    config["architecture"]["options"].update(change)
    config_path.write_text(json.dumps(config))
    with pytest.raises(UnetkitError, match="does not match the architecture") as info:
        load_model(tmp_path / "model")
    one_sentence(str(info.value))
