"""mobilenet_v2-unet: hand-counted parameters, stages, weights files and freezing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torchvision.models import mobilenet_v2

from unetkit.errors import UnetkitError
from unetkit.models.registry import build_model, count_parameters, get_entry


def conv(i: int, o: int, k: int) -> int:
    return i * o * k * k + o  # every conv in this model has a bias


def decoder_params(classes: int) -> int:
    """Up 2x2 (+bias) then 3x3 over [up, skip] (+bias) per block; 3x3 head."""
    skips, widths, ch, total = (96, 32, 24, 16, 3), (256, 128, 64, 32, 16), 320, 0
    for s, w in zip(skips, widths, strict=True):
        total += conv(ch, w, 2) + conv(w + s, w, 3)
        ch = w
    return total + conv(ch, classes, 3)


def small(**options):
    return build_model("mobilenet_v2-unet", encoder_weights=None, **options)


def test_parameter_counts() -> None:
    model = small(classes=3)
    assert count_parameters(model.encoder) == 1_811_712
    assert decoder_params(3) == 1_565_763
    assert count_parameters(model) == 3_377_475 == 1_811_712 + decoder_params(3)
    assert get_entry("mobilenet_v2-unet").reference["classes"] == 3


def test_stage_shapes_for_224() -> None:
    model = small().eval()
    x = torch.randn(1, 3, 224, 224)
    shapes = []
    with torch.no_grad():
        for i, layer in enumerate(model.encoder):
            x = layer(x)
            if i in (1, 3, 6, 13, 17):
                shapes.append(tuple(x.shape[1:]))
    assert shapes == [(16, 112, 112), (24, 56, 56), (32, 28, 28), (96, 14, 14), (320, 7, 7)]


def test_any_size_and_channels_last() -> None:
    model = small(classes=2).eval()
    x = torch.randn(1, 3, 250, 375)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 2, 250, 375)
        torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last)), out,
                                   rtol=1e-4, atol=1e-4)


def test_input_normalization() -> None:
    assert small().input_normalization == {"mean": [0.485, 0.456, 0.406],
                                           "std": [0.229, 0.224, 0.225]}
    grey = small(in_channels=1).input_normalization
    assert grey["mean"] == [pytest.approx((0.485 + 0.456 + 0.406) / 3)]


def test_frozen_encoder_keeps_batchnorm_statistics() -> None:
    model = small()  # freeze_encoder defaults to True
    assert not any(p.requires_grad for p in model.encoder.parameters())
    model.train()
    assert model.training and not model.encoder.training
    bn = model.encoder[1].conv[0][1]
    before = bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64)).mean().backward()
    torch.testing.assert_close(bn.running_mean, before)
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.head.weight.grad is not None

    model.set_encoder_trainable(True)
    assert model.encoder.training and all(p.requires_grad for p in model.encoder.parameters())
    model(torch.randn(2, 3, 64, 64)).mean().backward()
    assert model.encoder[0][0].weight.grad is not None
    assert not torch.equal(bn.running_mean, before)
    model.set_encoder_trainable(False)
    assert not model.encoder.training


def test_unfrozen_option() -> None:
    model = small(freeze_encoder=False).train()
    assert model.encoder.training and all(p.requires_grad for p in model.parameters())


def torchvision_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    state = mobilenet_v2(weights=None).state_dict()
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return state


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_from_file(tmp_path: Path, suffix: str) -> None:
    state = torchvision_checkpoint(tmp_path / f"mnv2{suffix}")
    model = build_model("mobilenet_v2-unet", encoder_weights=str(tmp_path / f"mnv2{suffix}"))
    torch.testing.assert_close(model.encoder[17].conv[2].weight, state["features.17.conv.2.weight"])
    torch.testing.assert_close(model.encoder[3].conv[1][1].running_var,
                               state["features.3.conv.1.1.running_var"])


def test_grey_input_adapts_first_conv(tmp_path: Path) -> None:
    state = torchvision_checkpoint(tmp_path / "mnv2.pth")
    model = build_model("mobilenet_v2-unet", in_channels=1, encoder_weights=str(tmp_path /
                                                                                "mnv2.pth"))
    torch.testing.assert_close(model.encoder[0][0].weight,
                               state["features.0.0.weight"].sum(1, keepdim=True))
    assert model(torch.randn(1, 1, 40, 40)).shape == (1, 1, 40, 40)


def test_imagenet_from_torch_hub_cache(weight_caches: dict[str, Path]) -> None:
    weight_caches["checkpoints"].mkdir(parents=True)
    state = torchvision_checkpoint(weight_caches["checkpoints"] / "mobilenet_v2-b0353104.pth")
    model = build_model("mobilenet_v2-unet")  # "imagenet" is the default
    torch.testing.assert_close(model.encoder[0][0].weight, state["features.0.0.weight"])


def test_missing_imagenet_weights_say_where_to_put_them(weight_caches: dict[str, Path],
                                                        one_sentence) -> None:
    with pytest.raises(UnetkitError) as info:
        build_model("mobilenet_v2-unet", encoder_weights="imagenet")
    message = str(info.value)
    assert str(weight_caches["checkpoints"] / "mobilenet_v2-b0353104.pth") in message
    assert "--encoder-weights none" in message
    one_sentence(message)


def test_damaged_and_mismatched_weight_files(tmp_path: Path, one_sentence) -> None:
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(b"\x80\x02 this is not a checkpoint")
    with pytest.raises(UnetkitError, match="not a readable weights file") as info:
        build_model("mobilenet_v2-unet", encoder_weights=str(damaged))
    one_sentence(str(info.value))

    damaged_st = tmp_path / "damaged.safetensors"
    damaged_st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(UnetkitError, match="not a readable weights file") as info:
        build_model("mobilenet_v2-unet", encoder_weights=str(damaged_st))
    one_sentence(str(info.value))

    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, other)
    with pytest.raises(UnetkitError, match="does not hold torchvision mobilenet_v2") as info:
        build_model("mobilenet_v2-unet", encoder_weights=str(other))
    one_sentence(str(info.value))

    with pytest.raises(UnetkitError, match="neither 'imagenet'") as info:
        build_model("mobilenet_v2-unet", encoder_weights=str(tmp_path / "absent.pth"))
    one_sentence(str(info.value))
