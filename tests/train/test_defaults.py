"""What `fit` picks when the user leaves model options open, on CPU and on CUDA."""

from __future__ import annotations

import torch

from unetkit.config import FitConfig
from unetkit.train.defaults import resolve

SIZES = [(512, 512)] * 4


def test_cpu_unet_gets_stem_no_dropout_and_says_why() -> None:
    d = resolve(FitConfig(data="x"), SIZES, 1.0, torch.device("cpu"))
    assert d.values["model_options"] == {"norm": "batch", "filters": 16, "stem": 2,
                                         "dropout": 0.0}
    assert d.values["size"] == [256, 256] and d.values["batch_size"] == 4
    reason = next(r for r in d.reasons if r.startswith("model_options"))
    assert "space-to-depth" in reason and "no dropout" in reason


def test_gpu_unet_keeps_full_resolution_first_level() -> None:
    d = resolve(FitConfig(data="x"), SIZES, 1.0, torch.device("cuda"))
    assert d.values["model_options"] == {"norm": "batch", "filters": 64}
    assert d.values["size"] == [512, 512] and d.values["batch_size"] == 4  # 16 x 256²


def test_stem_needs_a_budget_of_5_minutes() -> None:
    cpu = torch.device("cpu")
    short = resolve(FitConfig(data="x", max_time="2m"), SIZES, 1.0, cpu)
    assert "stem" not in short.values["model_options"]
    assert short.values["model_options"] == {"norm": "batch", "filters": 16}
    long = resolve(FitConfig(data="x", max_time="5m"), SIZES, 1.0, cpu)
    assert long.values["model_options"]["stem"] == 2


def test_small_cpu_patches_keep_full_resolution_first_level() -> None:
    d = resolve(FitConfig(data="x"), [(96, 96)] * 4, 1.0, torch.device("cpu"))
    assert d.values["size"] == [96, 96]
    assert d.values["model_options"] == {"norm": "batch", "filters": 16}


def test_user_options_win() -> None:
    config = FitConfig(data="x", model_options={"stem": 1, "dropout": 0.5, "filters": 8})
    d = resolve(config, SIZES, 1.0, torch.device("cpu"))
    assert d.values["model_options"] == {"stem": 1, "dropout": 0.5, "filters": 8,
                                         "norm": "batch"}
    other = resolve(FitConfig(data="x", model="mobilenet_v2-unet"), SIZES, 1.0,
                    torch.device("cpu"))
    assert "stem" not in other.values["model_options"]


def test_depthwise_encoders_train_strided_depthwise_in_float32_under_cpu_bf16() -> None:
    cpu = torch.device("cpu")
    mobile = FitConfig(data="x", model="timm-unet", precision="bf16-mixed",
                       model_options={"encoder": "mobilenetv2_100"})
    d = resolve(mobile, SIZES, 1.0, cpu)
    assert d.values["float32_depthwise"] is True
    assert any(r.startswith("float32_depthwise") and "bf16 backward" in r for r in d.reasons)
    for config in (FitConfig(data="x", model="timm-unet", precision="32"),
                   FitConfig(data="x", precision="bf16-mixed")):  # float32, plain U-Net
        d = resolve(config, SIZES, 1.0, cpu)
        assert d.values["float32_depthwise"] is False
        assert not any(r.startswith("float32_depthwise") for r in d.reasons)
