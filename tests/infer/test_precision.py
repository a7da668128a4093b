"""Precision is a visible choice: what "auto" means per command, both paths on any CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from infer_fixtures import tiny_model, write_images
from PIL import Image
from typer.testing import CliRunner

from unetkit import device as dev
from unetkit.cli import app
from unetkit.errors import UsageError
from unetkit.infer.predict import Predictor

CPU = torch.device("cpu")
# a stated tolerance for bf16 against float32 masks on a model whose logits straddle 0 at
# every pixel (tiny_model): bf16 keeps 8 mantissa bits, so pixels near the threshold flip
BF16_TINY_AGREEMENT = 0.98
runner = CliRunner()


@pytest.mark.parametrize("forced", ["0", "1"])
def test_auto_follows_the_cpu_bf16_override(monkeypatch: pytest.MonkeyPatch,
                                            forced: str) -> None:
    monkeypatch.setenv(dev.BF16_ENV, forced)
    want = "bf16-mixed" if forced == "1" else "32"
    assert dev.cpu_has_bf16() is (forced == "1")
    assert dev.bf16_forced() is (forced == "1")  # the one reader the planner asks too
    assert dev.resolve_precision("auto", CPU, "train") == want
    assert dev.resolve_precision("auto", CPU, "predict") == want
    # metrics and export checks never depend on the CPU
    assert dev.resolve_precision("auto", CPU, "evaluate") == "32"
    assert dev.resolve_precision("auto", CPU, "export") == "32"
    assert Predictor(tiny_model(), device="cpu").precision == want
    assert Predictor(tiny_model(), device="cpu", purpose="evaluate").precision == "32"
    # an explicit choice wins over the machine
    assert dev.resolve_precision("bf16-mixed", CPU, "evaluate") == "bf16-mixed"
    assert dev.resolve_precision("32", CPU, "predict") == "32"


def test_bad_precision_values_name_the_flag_or_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match=r"--precision 'fp8' is unknown"):
        dev.resolve_precision("fp8", CPU)
    with pytest.raises(UsageError, match="16-mixed needs a CUDA GPU"):
        dev.resolve_precision("16-mixed", CPU)
    monkeypatch.delenv(dev.BF16_ENV, raising=False)
    assert dev.bf16_forced() is None  # unset: the CPU's flags decide
    monkeypatch.setenv(dev.BF16_ENV, "yes")
    with pytest.raises(UsageError, match="UNETKIT_CPU_BF16='yes'"):
        dev.cpu_has_bf16()
    with pytest.raises(UsageError, match="--engine onnx runs float32"):
        Predictor(tiny_model(), engine="onnx", precision="bf16-mixed")


def test_cpu_features_come_from_torch_and_match_the_kernel_flags() -> None:
    caps = dev.cpu_capabilities()
    if not caps:
        pytest.skip("this torch build reports no CPU capabilities")
    flags = set(dev.cpu_flags())
    assert flags <= {k for k, v in caps.items() if v is True}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():  # Linux: the kernel's view agrees on the basic vector units
        kernel = set(cpuinfo.read_text().split("flags", 1)[1].split("\n", 1)[0].split())
        assert ("avx2" in flags) == ("avx2" in kernel)
        assert ("avx512_bf16" in flags) == ("avx512_bf16" in kernel)
    assert dev.cpu_model()


def test_cpu_model_names_family_and_model(tmp_path: Path) -> None:
    """One marketing name covers several generations: the numbers tell them apart."""
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\n"
                    "model\t\t: 2\nmodel name\t: AMD EPYC\n")
    assert dev._cpuinfo_ids(info) == ("26", "2")
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\n")
    assert dev._cpuinfo_ids(info) is None
    assert dev._cpuinfo_ids(tmp_path / "missing") is None


def test_bf16_masks_agree_with_float32_within_tolerance() -> None:
    """Runs bf16 on any CPU (emulated where it is not native): the path is tested everywhere."""
    model = tiny_model()
    image = np.random.default_rng(1).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    fp32 = Predictor(model, device="cpu", precision="32")
    bf16 = Predictor(model, device="cpu", precision="bf16-mixed")
    p32, p16 = fp32.probabilities(image), bf16.probabilities(image)
    assert not np.array_equal(p32, p16), "bf16 autocast did not run"
    assert np.abs(p32 - p16).max() < 0.1
    agreement = (fp32.mask_from_probabilities(p32) == bf16.mask_from_probabilities(p16)).mean()
    assert agreement >= BF16_TINY_AGREEMENT


@pytest.mark.parametrize("forced", ["0", "1"])
def test_evaluate_json_records_float32_on_any_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 forced: str) -> None:
    from unetkit.models.artifact import save_model

    monkeypatch.setenv(dev.BF16_ENV, forced)
    save_model(tiny_model(), tmp_path / "run" / "model")
    data = tmp_path / "data"
    write_images(data / "images")
    (data / "masks").mkdir()
    for p in sorted((data / "images").iterdir()):
        h, w = np.asarray(Image.open(p)).shape[:2]
        Image.fromarray(np.tile(np.arange(w, dtype=np.uint8) * 4, (h, 1))).save(
            data / "masks" / p.name)
    res = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--data", str(data), "--json"])
    assert res.exit_code == 0, res.output
    auto = json.loads(res.stdout)
    assert (auto["engine"], auto["precision"]) == ("torch", "32")
    res = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--data", str(data), "--json",
                              "--precision", "bf16-mixed", "--out", str(tmp_path / "e2")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["precision"] == "bf16-mixed"
    res = runner.invoke(app, ["predict", str(tmp_path / "run"), str(data / "images"), "--out",
                              str(tmp_path / "p"), "--precision", "half"])
    assert res.exit_code == 2 and "--precision 'half' is unknown" in res.stderr
