"""`--engine auto`: measured once per CPU and weights into engines.json, refused engines never
chosen, explicit engines warned about; and the one-sentence engine/precision errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from engine_fixtures import copy_run, flip_int8, make_run_one_thread
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.infer import engine_auto, engine_check, engine_records
from unetkit.infer.engine_auto import engine_for_predict
from unetkit.infer.engine_records import ENGINES_JSON, cpu_key
from unetkit.infer.engines import candidates
from unetkit.infer.openvino_engine import openvino_available
from unetkit.infer.predict import Predictor

runner = CliRunner()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run_one_thread(tmp_path_factory.mktemp("auto"))


@pytest.fixture
def run_dir(made: Path, tmp_path: Path) -> Path:
    return copy_run(made, tmp_path / "run")


def _block(run: Path, key: str | None = None) -> dict:
    data = json.loads((run / "model" / ENGINES_JSON).read_text())
    return data["cpus"][key or cpu_key()]


def _chosen(net, precision: str) -> str:
    p = Predictor(net, precision=precision)
    return f"{p.engine}/{p.precision}"


def _no_measuring(monkeypatch) -> None:
    monkeypatch.setattr(engine_auto, "measure", lambda *a: pytest.fail("measured again"))


def test_auto_measures_records_and_then_reads_the_records(run_dir: Path, monkeypatch) -> None:
    net, precision = engine_for_predict(run_dir, "auto")
    block = _block(run_dir)
    records = block["engines"]
    expected = {f"{e}/{p}" for e, p in candidates("auto", openvino_available())}
    assert set(records) == expected
    assert block["flags"] == engine_records.cpu_flags() and block["cpu"]
    for key, rec in records.items():
        assert rec["status"] in ("passed", "refused"), (key, rec.get("error"))
        assert rec["ms_per_image"] > 0 and 0 <= rec["agreement"] <= 1
        assert rec["status"] == ("passed" if rec["agreement"] >= 0.995 else "refused")
        assert rec["images"] == 2 and rec["pixels"] == 2 * 48 * 64
        assert rec["date"] and rec["threads"] >= 1 and "val split" in rec["checked_on"]
    assert records["torch/32"]["agreement"] == 1.0
    fastest = min((k for k, r in records.items() if r["status"] == "passed"),
                  key=lambda k: records[k]["ms_per_image"])
    assert _chosen(net, precision) == fastest
    _no_measuring(monkeypatch)  # the second run reads engines.json
    assert _chosen(*engine_for_predict(run_dir, "auto")) == fastest
    # --precision narrows auto to that precision's engines
    net32, p32 = engine_for_predict(run_dir, "auto", "32")
    assert _chosen(net32, p32).endswith("/32")


def test_records_are_per_cpu_and_per_weights(run_dir: Path, monkeypatch) -> None:
    engine_for_predict(run_dir, "auto", "32")
    here = cpu_key()
    monkeypatch.setattr(engine_records, "cpu_key", lambda: "Other CPU [avx2]")
    assert engine_records.load_records(run_dir / "model") == {}  # another machine re-measures
    engine_for_predict(run_dir, "auto", "32")
    data = json.loads((run_dir / "model" / ENGINES_JSON).read_text())
    assert set(data["cpus"]) == {here, "Other CPU [avx2]"}
    # new weights (a new save id): this CPU's old records no longer count
    from unetkit.models.artifact import load_model, save_model

    save_model(load_model(run_dir), run_dir / "model")
    assert engine_records.load_records(run_dir / "model") == {}


def test_a_disagreeing_engine_is_refused_and_auto_picks_another(run_dir: Path,
                                                                 monkeypatch) -> None:
    flip_int8(monkeypatch)  # every int8 engine now disagrees on ~10% of the pixels
    engine_for_predict(run_dir, "auto")
    records = _block(run_dir)["engines"]
    int8 = [k for k in records if k.endswith("/int8")]
    assert int8 and all(records[k]["status"] == "refused" for k in int8)
    assert all(0.85 < records[k]["agreement"] < 0.95 for k in int8)
    # even when recorded as the fastest, a refused engine is not auto's choice
    data = json.loads((run_dir / "model" / ENGINES_JSON).read_text())
    for k in int8:
        data["cpus"][cpu_key()]["engines"][k]["ms_per_image"] = 1e-6
    (run_dir / "model" / ENGINES_JSON).write_text(json.dumps(data))
    _no_measuring(monkeypatch)
    assert not _chosen(*engine_for_predict(run_dir, "auto")).endswith("/int8")
    # --precision int8 with auto: nothing passed, so float32 PyTorch
    assert _chosen(*engine_for_predict(run_dir, "auto", "int8")) == "torch/32"


def test_explicit_int8_that_fails_warns_and_runs(run_dir: Path, monkeypatch) -> None:
    flip_int8(monkeypatch)
    image = engine_check.run_images(run_dir, run_dir / "model").val[0].image
    out = run_dir / "masks"
    res = runner.invoke(app, ["predict", str(run_dir), str(image), "--out", str(out),
                              "--engine", "onnx", "--precision", "int8"])
    assert res.exit_code == 0, res.output
    assert (out / image.name).is_file()
    warning = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]
    rec = _block(run_dir)["engines"]["onnx/int8"]
    assert rec["status"] == "refused"
    assert len(warning) == 1 and f"{100 * rec['agreement']:.2f}%" in warning[0]


@pytest.mark.parametrize("bf16", ["0", "1"])
def test_auto_without_run_data_runs_what_engine_torch_runs(made: Path, tmp_path: Path,
                                                           monkeypatch, bf16: str) -> None:
    # nothing to check an engine on: the torch engine at --precision auto (bf16 where the
    # CPU has it), not a slower float32
    monkeypatch.setenv("UNETKIT_CPU_BF16", bf16)
    alone = copy_run(made / "model", tmp_path / "alone")
    net, precision = engine_for_predict(alone, "auto")
    assert _chosen(net, precision) == ("torch/bf16-mixed" if bf16 == "1" else "torch/32")
    assert not (alone / ENGINES_JSON).exists()


def test_auto_on_a_gpu_machine_is_the_torch_engine(run_dir: Path, monkeypatch) -> None:
    # the CPU engines' measurements say nothing about a GPU: nothing is measured
    monkeypatch.setattr(engine_auto, "on_cuda", lambda precision: precision != "int8")
    _no_measuring(monkeypatch)
    assert engine_auto.resolve_engine(run_dir, "auto", "auto") == ("torch", "auto")
    net, _ = engine_for_predict(run_dir, "auto")
    assert isinstance(net, torch.nn.Module)


def test_candidates_follow_the_cpu(monkeypatch) -> None:
    monkeypatch.setenv("UNETKIT_CPU_BF16", "0")
    assert candidates() == [("torch", "32"), ("onnx", "32"), ("onnx", "int8"),
                            ("openvino", "32"), ("openvino", "int8")]
    assert candidates("int8", openvino=False) == [("onnx", "int8")]
    monkeypatch.setenv("UNETKIT_CPU_BF16", "1")
    assert {("torch", "bf16-mixed"), ("openvino", "bf16-mixed")} <= set(candidates())


def _error(res) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_openvino_missing_is_one_sentence_naming_the_extra(run_dir: Path,
                                                           monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    image = engine_check.run_images(run_dir, run_dir / "model").val[0].image
    res = runner.invoke(app, ["predict", str(run_dir), str(image), "--out",
                              str(run_dir / "o"), "--engine", "openvino"])
    assert res.exit_code == 2
    assert "pip install 'unetkit[openvino]'" in _error(res)


@pytest.mark.parametrize(("engine", "precision", "words"), [
    ("torch", "int8", "--precision int8 runs on --engine onnx, openvino or auto"),
    ("onnx", "bf16-mixed", "--engine onnx runs 32 or int8"),
    ("tvm", "auto", "--engine 'tvm' is unknown"),
    ("auto", "int4", "--precision 'int4' is unknown"),
    ("auto", "16-mixed", "--engine auto runs 32, bf16-mixed or int8 on the CPU"),
])
def test_bad_engine_and_precision_are_one_sentence(tmp_path: Path, engine: str, precision: str,
                                                   words: str) -> None:
    res = runner.invoke(app, ["predict", str(tmp_path), str(tmp_path), "--out",
                              str(tmp_path / "o"), "--engine", engine, "--precision", precision])
    assert res.exit_code == 2 and words in _error(res)
