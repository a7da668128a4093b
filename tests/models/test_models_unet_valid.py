"""The original valid-padding U-Net: sizes, margins, and centred crop-and-concatenate."""

from __future__ import annotations

import pytest
import torch

from unetkit.errors import UsageError
from unetkit.models.registry import build_model, count_parameters
from unetkit.models.unet_valid import nearest_valid_sizes, valid_output_size


def test_paper_sizes() -> None:
    # 572 -4 =568 /2 =284 -4 =280 /2 =140 -4 =136 /2 =68 -4 =64 /2 =32 -4 =28 (bottleneck)
    # up: 56-4=52, 104-4=100, 200-4=196, 392-4=388
    assert valid_output_size(572, 4) == 388
    assert valid_output_size(18, 1) == 2  # 18-4=14 /2=7 -4=3, 6-4=2
    assert valid_output_size(44, 2) == 4  # 44-4=40 /2=20 -4=16 /2=8 -4=4, 8-4=4, 8-4=4


def test_nearest_valid_sizes() -> None:
    # valid inputs at depth 4 are 16k + 12, from 188 (4x4 output) upwards
    assert nearest_valid_sizes(500, 4) == (492, 508)
    assert nearest_valid_sizes(572, 4) == (572, 572)
    assert nearest_valid_sizes(100, 4) == (None, 188)
    with pytest.raises(UsageError, match="492 or 508"):
        valid_output_size(500, 4)


def test_paper_model_572_to_388() -> None:
    model = build_model("unet-valid", filters=2).eval()  # full depth 4, narrow for speed
    with torch.no_grad():
        assert model(torch.randn(1, 3, 572, 572)).shape == (1, 1, 388, 388)
    assert model.output_margin(572) == 92
    with torch.device("meta"):
        assert count_parameters(build_model("unet-valid")) == 31_031_745  # convs as in `unet`


def test_non_square_and_multiclass() -> None:
    model = build_model("unet-valid", filters=4, depth=2, classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 44, 52)).shape == (2, 3, 4, 12)
    assert model.output_margin(44) == model.output_margin(52) == 20


def test_bad_size_names_the_nearest_valid_ones(one_sentence) -> None:
    model = build_model("unet-valid", filters=2, depth=2).eval()
    with pytest.raises(UsageError) as info:
        model(torch.randn(1, 3, 44, 50))
    assert "width of 50" in str(info.value) and "48 or 52" in str(info.value)
    one_sentence(str(info.value))
    with pytest.raises(UsageError):
        model.output_margin(45)


def test_skip_crop_is_centred() -> None:
    """With the up-convs zeroed only the top-level skip reaches the output; output pixel (0, 0)
    must then see only input pixels within the 9x9 field (2 convs down, 2 up) around
    (margin, margin)."""
    torch.manual_seed(0)
    model = build_model("unet-valid", filters=4, depth=2, dropout=0.0).eval()
    with torch.no_grad():
        for up in model.up:
            up.weight.zero_()
    x = torch.randn(1, 3, 44, 44, requires_grad=True)
    model(x)[0, 0, 0, 0].backward()
    rows, cols = (x.grad.abs().sum(dim=(0, 1)) > 0).nonzero(as_tuple=True)
    m = model.output_margin(44)
    assert len(rows) > 0
    assert rows.min() >= m - 4 and rows.max() <= m + 4
    assert cols.min() >= m - 4 and cols.max() <= m + 4


def test_never_pads() -> None:
    model = build_model("unet-valid", filters=2, depth=1).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 18, 20)).shape == (1, 1, 2, 4)
