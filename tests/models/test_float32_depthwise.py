"""Float32Conv2d: strided depthwise convolutions kept in float32 under CPU bf16 autocast."""

from __future__ import annotations

import copy

import torch
from torch import nn

from unetkit.models.layers import Float32Conv2d, float32_strided_depthwise
from unetkit.models.registry import build_model
from unetkit.train.defaults import float32_depthwise_for


def _block() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False),  # strided depthwise
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise, stride 1: stays
        nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2),  # grouped, not depthwise: stays
        nn.Conv2d(16, 16, 1, stride=2))  # strided, not grouped: stays


def test_only_strided_depthwise_convolutions_change_and_weights_keep_their_names() -> None:
    model = _block()
    names = list(model.state_dict())
    assert float32_strided_depthwise(model) == 1
    assert [type(m) for m in model] == [Float32Conv2d, nn.Conv2d, nn.Conv2d, nn.Conv2d]
    assert list(model.state_dict()) == names
    assert float32_strided_depthwise(model, on=False) == 1  # and back
    assert all(type(m) is nn.Conv2d for m in model)


def test_float32_under_bf16_autocast_same_values_as_float32() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
    ours = copy.deepcopy(conv)
    float32_strided_depthwise(ours)
    x = torch.randn(2, 8, 16, 16).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain, kept = conv(x), ours(x.bfloat16())
    assert plain.dtype == torch.bfloat16 and kept.dtype == torch.float32
    expected = nn.functional.conv2d(x.bfloat16().float(), conv.weight, conv.bias, stride=2,
                                    padding=1, groups=8)
    assert torch.allclose(kept, expected, atol=1e-6)
    kept.sum().backward()  # gradients reach the float32 weights
    assert ours.weight.grad is not None and ours.weight.grad.dtype == torch.float32
    assert ours(x).dtype == torch.float32  # outside autocast: an ordinary Conv2d


def test_mobilenet_encoder_has_strided_depthwise_and_plain_unet_has_none() -> None:
    mobile = build_model("timm-unet", encoder="mobilenetv2_100", encoder_weights=None)
    assert float32_strided_depthwise(mobile) == 4  # MobileNetV2's four stride-2 blocks
    assert float32_strided_depthwise(build_model("unet", filters=8)) == 0


def test_only_cpu_bf16_training_uses_it() -> None:
    assert float32_depthwise_for("bf16-mixed", "cpu")
    assert not float32_depthwise_for("32", "cpu")
    assert not float32_depthwise_for("bf16-mixed", "cuda")
    assert not float32_depthwise_for("16-mixed", "cuda")
