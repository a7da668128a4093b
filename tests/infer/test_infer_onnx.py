"""ONNX export: parity with PyTorch, dynamic sizes, metadata, and the onnxruntime engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from infer_fixtures import MEAN, STD, shared_data, tiny_model
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.data.readers import read_image
from unetkit.errors import UsageError
from unetkit.infer import onnx as onnx_mod
from unetkit.infer.onnx import (
    OnnxEngine,
    export_onnx,
    load_for_engine,
    make_session,
    read_metadata,
    write_onnx,
)
from unetkit.infer.predict import Predictor
from unetkit.models.artifact import save_model


def _torch(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).numpy()


def test_export_parity_metadata_and_opset(tmp_path: Path) -> None:
    model = tiny_model()
    result = write_onnx(model, tmp_path / "m.onnx")
    assert result.max_abs_diff <= 1e-4
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    meta = read_metadata(tmp_path / "m.onnx")
    assert json.loads(meta["normalization"]) == {"mean": MEAN, "std": STD}
    assert json.loads(meta["class_names"]) == ["background", "foreground"]
    assert json.loads(meta["input_size"]) == [32, 32]
    assert json.loads(meta["scale"]) == 1.0
    assert json.loads(meta["binary"]) is True
    assert meta["outputs"] == "logits" and meta["in_channels"] == "3"
    assert meta["unetkit_version"] and meta["pad_multiple"] == "4"
    config = json.loads(meta["config"])
    assert config["architecture"]["name"] == "unet"
    assert config["architecture"]["options"]["filters"] == 4
    # graph input/output are dynamic in batch, height and width
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"]
    assert dims[1].dim_value == 3


def test_dynamic_sizes_including_tiny_inputs() -> None:
    model = tiny_model()
    engine = OnnxEngine(make_session(export_onnx(model).data))  # traced at 9x13
    gen = torch.Generator().manual_seed(3)
    for shape in [(1, 3, 37, 53), (2, 3, 20, 20), (1, 3, 64, 33), (1, 3, 3, 2), (1, 3, 1, 9)]:
        x = torch.randn(shape, generator=gen)
        got = engine(x).numpy()
        ref = _torch(model, x)
        assert got.shape == ref.shape == (shape[0], 1, *shape[2:])
        assert np.abs(got - ref).max() <= 1e-4, shape


def test_stem_model_pads_to_its_grid_and_matches_torch() -> None:
    model = tiny_model(stem=2)  # depth 2 x stem 2: sides padded to a multiple of 8
    engine = OnnxEngine(make_session(export_onnx(model).data))
    assert engine.multiple == 8
    gen = torch.Generator().manual_seed(5)
    for shape in [(1, 3, 37, 53), (2, 3, 16, 24), (1, 3, 5, 3)]:
        x = torch.randn(shape, generator=gen)
        got, ref = engine(x).numpy(), _torch(model, x)
        assert got.shape == ref.shape == (shape[0], 1, *shape[2:])
        assert np.abs(got - ref).max() <= 1e-4, shape


def test_real_image_parity() -> None:
    path = shared_data("membrane") / "images" / "00.png"
    image = read_image(path)
    result = export_onnx(tiny_model(), check_image=image, image_name=str(path))
    assert result.image_max_abs_diff is not None and result.image_max_abs_diff <= 1e-4
    assert result.max_abs_diff <= 1e-4


def test_valid_padding_model_exports_dynamic() -> None:
    model = tiny_model("unet-valid")
    engine = OnnxEngine(make_session(export_onnx(model).data))
    x = torch.randn(1, 3, 100, 52, generator=torch.Generator().manual_seed(1))
    got, ref = engine(x).numpy(), _torch(model, x)
    assert got.shape == ref.shape == (1, 1, 60, 12)
    assert np.abs(got - ref).max() <= 1e-4
    assert engine.output_margin(100) == model.output_margin(100)
    # the whole predict path (overlap-tiles) on a 100x130 image agrees with torch
    image = np.random.default_rng(0).integers(0, 256, (100, 130, 3), dtype=np.uint8)
    p_torch = Predictor(model, tile=52, precision="32").probabilities(image)
    p_onnx = Predictor(engine, tile=52).probabilities(image)
    assert p_onnx.shape == (1, 100, 130)
    assert np.abs(p_onnx - p_torch).max() <= 1e-4


def test_predictor_takes_session_or_engine_flag(tmp_path: Path) -> None:
    model = tiny_model()
    write_onnx(model, tmp_path / "m.onnx")
    image = np.random.default_rng(1).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    ref = Predictor(model, precision="32").probabilities(image)
    from_session = Predictor(make_session(tmp_path / "m.onnx"), tta=False)
    assert from_session.engine == "onnx" and from_session.class_names == ["background",
                                                                          "foreground"]
    assert np.abs(from_session.probabilities(image) - ref).max() <= 1e-4
    via_flag = Predictor(model, engine="onnx", tta=True)
    assert np.abs(via_flag.probabilities(image) - Predictor(model, tta=True, precision="32")
                  .probabilities(image)).max() <= 1e-4
    with pytest.raises(UsageError, match="--engine 'trt'"):
        Predictor(model, engine="trt")


def test_cli_export_prints_difference_and_predict_reuses_it(tmp_path: Path, model_dir: Path,
                                                            image_folder: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    runner = CliRunner()
    target = tmp_path / "out.onnx"
    res = runner.invoke(app, ["export", str(model_dir), "--onnx", str(target), "--check-image",
                              str(image_folder / "img0.png")])
    assert res.exit_code == 0, res.output
    assert "max abs logit difference vs PyTorch" in res.stderr and target.is_file()
    res = runner.invoke(app, ["export", str(model_dir), "--onnx", str(tmp_path / "x.pt")])
    assert res.exit_code == 2 and "must name a .onnx file" in res.stderr
    # default target: MODEL/model/model.onnx, which --engine onnx reuses while up to date
    assert runner.invoke(app, ["export", str(model_dir)]).exit_code == 0
    cached = model_dir / "model" / "model.onnx"
    assert cached.is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("exported again although model.onnx is up to date")

    monkeypatch.setattr(onnx_mod, "export_onnx", refuse)
    assert isinstance(load_for_engine(model_dir, "onnx"), OnnxEngine)
    weights = model_dir / "model" / "model.safetensors"
    later = cached.stat().st_mtime + 10
    os.utime(weights, (later, later))  # retrained: the cached export is stale
    with pytest.raises(AssertionError, match="exported again"):
        load_for_engine(model_dir, "onnx")


def test_engine_for_multiclass_four_channel_model(tmp_path: Path) -> None:
    model = tiny_model(channels=4, classes=3)
    save_model(model, tmp_path / "m")
    engine = load_for_engine(tmp_path / "m", "onnx")
    image = np.random.default_rng(2).integers(0, 256, (30, 41, 4), dtype=np.uint8)
    p_onnx = Predictor(engine).probabilities(image)
    p_torch = Predictor(model, precision="32").probabilities(image)
    assert p_onnx.shape == (3, 30, 41)
    assert np.abs(p_onnx - p_torch).max() <= 1e-4


def test_engine_declares_the_exported_geometry() -> None:
    for model in (tiny_model(), tiny_model(stem=2), tiny_model("unet-valid")):
        result = export_onnx(model)
        engine = OnnxEngine(make_session(result.data))
        assert engine.geometry == model.geometry
        assert json.loads(result.metadata["valid_padding"]) is model.geometry.valid_padding


def test_sessions_use_torchs_thread_count_and_do_not_spin() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        session = make_session(export_onnx(tiny_model()).data)
    finally:
        torch.set_num_threads(before)
    options = session.get_session_options()
    assert options.intra_op_num_threads == 1
    # busy-waiting threads fought PyTorch's for the cores (docs/decisions.md)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
