"""int8 (onnxruntime and OpenVINO) and OpenVINO float engines: masks against float32 PyTorch,
the temperature, the quantised model's metadata, and `unetkit export --precision int8`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_fixtures import copy_run, flip_int8, make_run_one_thread, val_images
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.infer.engine_check import run_images
from unetkit.infer.engines import build_runner
from unetkit.infer.onnx import export_onnx, read_metadata
from unetkit.infer.predict import Predictor
from unetkit.infer.quantize import INT8_NAME, calibration_inputs, int8_bytes
from unetkit.models.artifact import load_model

runner = CliRunner()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run_one_thread(tmp_path_factory.mktemp("engines"))


@pytest.fixture(scope="module")
def int8(made: Path) -> bytes:
    model = load_model(made)
    return int8_bytes(model, run_images(made, made / "model").calibration_images())


@pytest.fixture
def run_dir(made: Path, tmp_path: Path) -> Path:
    return copy_run(made, tmp_path / "run")


def _agreement(net, reference: Predictor, images: list[np.ndarray]) -> float:
    got = Predictor(net)
    same = sum(int((got.predict(im) == reference.predict(im)).sum()) for im in images)
    return same / sum(im.shape[0] * im.shape[1] for im in images)


def _engines(model, int8: bytes) -> dict[str, object]:
    out = {"onnx int8": build_runner(model, "onnx", "int8", int8)}
    try:
        import openvino  # noqa: F401
    except ImportError:
        return out
    fp32 = export_onnx(model).data
    return {**out, "openvino 32": build_runner(model, "openvino", "32", fp32),
            "openvino int8": build_runner(model, "openvino", "int8", int8)}


def test_int8_and_openvino_masks_agree_with_float32_torch(made: Path, int8: bytes) -> None:
    model = load_model(made)
    reference = Predictor(model, precision="32")
    images = val_images(made)
    for name, net in _engines(model, int8).items():
        agree = _agreement(net, reference, images)
        assert agree >= (0.9999 if name.endswith("32") else 0.99), (name, agree)
    # the masks are not degenerate: both classes are well represented on the check images
    share = np.mean([reference.predict(im).mean() for im in images])
    assert 0.05 < share < 0.95


def test_engines_report_their_name_and_precision(made: Path, int8: bytes) -> None:
    model = load_model(made)
    for name, net in _engines(model, int8).items():
        predictor = Predictor(net)
        assert f"{predictor.engine} {predictor.precision}" == name
    meta = read_metadata(int8)
    assert meta["precision"] == "int8"
    assert json.loads(meta["quantization"])["calibration_batches"] == 16
    assert json.loads(meta["config"])["architecture"]["name"] == "unet"


def test_int8_logits_keep_their_resolution_near_the_threshold(made: Path, int8: bytes) -> None:
    """The head is left in float: uint8 logits would take at most 256 distinct values."""
    model = load_model(made)
    x = calibration_inputs(model, val_images(made), batches=1)[0]
    logits = build_runner(model, "onnx", "int8", int8)(x)
    assert len(np.unique(logits.numpy())) > 256


def test_temperature_is_applied_the_same_way_by_every_engine(made: Path, tmp_path: Path) -> None:
    from unetkit.models.artifact import save_model

    raw = load_model(made)
    t = 2.5
    save_model(raw, tmp_path / "hot", {"temperature": t})
    model = load_model(tmp_path / "hot")
    image = val_images(made)[0]
    x = calibration_inputs(raw, [image], batches=1)[0]  # the whole image: 48x64 < 256
    with torch.no_grad():
        expected = torch.sigmoid(raw(x) / t)[0].numpy()  # by hand, from the raw logits
    quantised = int8_bytes(model, [image])
    assert json.loads(read_metadata(quantised)["temperature"]) == t
    nets = {"torch 32": model, **_engines(model, quantised),
            "onnx 32": build_runner(model, "onnx", "32")}
    for name, net in nets.items():
        got = Predictor(net, precision="32" if name == "torch 32" else "auto").probabilities(
            image)
        tolerance = 0.03 if "int8" in name else 1e-4
        np.testing.assert_allclose(got, expected, atol=tolerance, err_msg=name)
    assert np.abs(expected - torch.sigmoid(raw(x))[0].detach().numpy()).max() > 0.05


def test_export_int8_writes_checks_and_records(run_dir: Path, monkeypatch) -> None:
    res = runner.invoke(app, ["export", str(run_dir), "--precision", "int8"])
    assert res.exit_code == 0, res.output
    written = run_dir / "model" / INT8_NAME
    assert read_metadata(written)["precision"] == "int8"
    assert "masks agree with float32 PyTorch on" in res.stderr
    records = json.loads((run_dir / "model" / "engines.json").read_text())
    (block,) = records["cpus"].values()
    rec = block["engines"]["onnx/int8"]
    assert rec["status"] == "passed" and rec["agreement"] >= 0.995 and rec["ms_per_image"] > 0
    assert block["engines"]["torch/32"]["agreement"] == 1.0
    # predict --engine onnx --precision int8 runs the written model (no new quantisation)
    from unetkit.infer import engine_check

    monkeypatch.setattr(engine_check, "int8_bytes", lambda *a, **k: pytest.fail("requantised"))
    image = run_images(run_dir, run_dir / "model").val[0].image
    res = runner.invoke(app, ["predict", str(run_dir), str(image), "--out",
                              str(run_dir / "masks"), "--engine", "onnx", "--precision", "int8"])
    assert res.exit_code == 0, res.output
    assert (run_dir / "masks" / image.name).is_file()


def test_export_int8_refuses_a_disagreeing_model(run_dir: Path, monkeypatch) -> None:
    flip_int8(monkeypatch)  # 10% of the columns flipped: about 90% agreement
    target = run_dir / "q.onnx"
    res = runner.invoke(app, ["export", str(run_dir), "--precision", "int8", "--onnx",
                              str(target)])
    assert res.exit_code == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "was not written" in lines[0] and str(target) in lines[0]
    assert not target.exists() and not (run_dir / "model" / INT8_NAME).exists()
    rec = json.loads((run_dir / "model" / "engines.json").read_text())
    rec = next(iter(rec["cpus"].values()))["engines"]["onnx/int8"]
    assert rec["status"] == "refused" and 0.85 < rec["agreement"] < 0.95
    assert f"{100 * rec['agreement']:.2f}%" in lines[0]


def test_export_int8_needs_the_run(made: Path, tmp_path: Path) -> None:
    alone = copy_run(made / "model", tmp_path / "alone")  # an artifact outside any run
    res = runner.invoke(app, ["export", str(alone), "--precision", "int8"])
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert res.exit_code == 2 and len(lines) == 1 and "splits.json" in lines[0]
    assert not (alone / INT8_NAME).exists()
