"""The classic same-padding U-Net and its presets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unetkit.errors import UsageError
from unetkit.models.registry import build_model, count_parameters, get_entry, resolve_options


def conv(i: int, o: int, k: int = 3, bias: bool = True) -> int:
    return i * o * k * k + (o if bias else 0)


def unet_params(in_ch: int, classes: int, filters: int, depth: int) -> int:
    """Hand count: two 3x3 convs per level, 2x2 up-convs, 1x1 head, no normalisation."""
    widths = [filters * 2**i for i in range(depth + 1)]
    total, ch = 0, in_ch
    for w in widths:
        total += conv(ch, w) + conv(w, w)
        ch = w
    for w in reversed(widths[:-1]):
        total += conv(ch, w, 2) + conv(2 * w, w) + conv(w, w)
        ch = w
    return total + conv(ch, classes, 1)


def meta_count(name: str, **options) -> int:
    """Parameter count without allocating or initialising the weights."""
    with torch.device("meta"):
        return count_parameters(build_model(name, **options))


def test_unet_has_31_031_745_parameters() -> None:
    assert meta_count("unet", in_channels=3, classes=1, norm="none") == 31_031_745 \
        == unet_params(3, 1, 64, 4)
    assert meta_count("unet", in_channels=1, classes=4, filters=8, depth=3) == \
        unet_params(1, 4, 8, 3)
    assert get_entry("unet").reference == {"in_channels": 3, "classes": 1}


def test_unet_keeps_odd_input_size() -> None:
    model = build_model("unet", filters=4).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 250, 375)).shape == (1, 1, 250, 375)


def test_bilinear_depth_3_and_multiclass() -> None:
    model = build_model("unet", filters=4, depth=3, upsample="bilinear", classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 40, 56)).shape == (2, 5, 40, 56)
    assert len(model.down) == 3


@pytest.mark.parametrize("norm", ["batch", "group", "instance"])
def test_norms(norm: str) -> None:
    model = build_model("unet", filters=8, depth=2, norm=norm)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 1, 16, 16)


def test_bad_option_is_usage_error() -> None:
    with pytest.raises(UsageError, match="upsample"):
        build_model("unet", upsample="cubic")
    with pytest.raises(UsageError, match="no option"):
        build_model("unet", encoder="resnet34")


def test_presets() -> None:
    assert resolve_options("unet-bn")["norm"] == "batch"
    opts = resolve_options("unet1024")
    assert (opts["filters"], opts["depth"], opts["norm"]) == (8, 7, "batch")
    # 1024 / 2**7 = an 8x8 bottleneck with 8 * 2**7 = 1024 channels
    with torch.device("meta"):
        model = build_model("unet1024")
    assert model.bottleneck[0].out_channels == 1024
    assert count_parameters(model) == 31_119_897


def test_channels_last_matches_contiguous() -> None:
    model = build_model("unet-bn", filters=4, depth=2).eval()
    x = torch.randn(1, 3, 30, 46)
    with torch.no_grad():
        ref = model(x)
        out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("stem", [1, 2])
def test_onnx_export_matches_torch(tmp_path: Path, stem: int) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = build_model("unet", filters=4, depth=2, stem=stem).eval()
    x = torch.randn(2, 3, 32, 48)
    path = tmp_path / "unet.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                      dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_torch_compile_graph_captures_whole_model() -> None:
    """Dynamo capture without graph breaks; the inductor backend takes ~60 s here, so
    `aot_eager` stands in for it."""
    model = build_model("unet", filters=4, depth=2).eval()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))


def test_stem_is_the_plain_unet_on_space_to_depth_input() -> None:
    """stem=2 = pixel-unshuffle, a U-Net with 4x the input/output channels, pixel-shuffle."""
    stem = build_model("unet", in_channels=1, classes=2, filters=4, depth=2, stem=2).eval()
    plain = build_model("unet", in_channels=4, classes=8, filters=4, depth=2).eval()
    plain.load_state_dict(stem.state_dict())
    assert count_parameters(stem) == unet_params(4, 8, 4, 2)
    x = torch.randn(2, 1, 32, 48)
    with torch.no_grad():
        expected = torch.nn.functional.pixel_shuffle(
            plain(torch.nn.functional.pixel_unshuffle(x, 2)), 2)
        torch.testing.assert_close(stem(x), expected)
    # every output pixel has its own logit: the 4 pixels of a 2x2 block differ
    assert not torch.equal(expected[..., 0::2, 0::2], expected[..., 1::2, 1::2])


def test_stem_keeps_odd_input_size_and_pads_to_its_grid() -> None:
    model = build_model("unet", filters=4, depth=3, stem=2).eval()
    assert model.grid == 16
    with torch.no_grad():
        assert model(torch.randn(1, 3, 250, 375)).shape == (1, 1, 250, 375)
        assert model(torch.randn(1, 3, 5, 7)).shape == (1, 1, 5, 7)
    with pytest.raises(UsageError, match="stem"):
        build_model("unet", stem=0)
