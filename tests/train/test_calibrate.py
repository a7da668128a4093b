"""Temperature scaling at the end of fit: T recovered on over-confident toys, the bounded
logit sample, the artifact round trip, and `fit` with and without --no-calibrate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import unetkit
from unetkit.cli import app
from unetkit.config import FitConfig
from unetkit.data.synthetic import write_folder
from unetkit.infer.predict import Predictor
from unetkit.models.artifact import load_model, save_model, temperature_of
from unetkit.pipeline import run_fit
from unetkit.scoring import IGNORE
from unetkit.train.calibrate import TemperatureFit, calibrate, collect_logits, ece, nll


def _overconfident(classes: int, n: int = 200_000, seed: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels drawn from calibrated logits, returned with those logits times 5."""
    g = torch.Generator().manual_seed(seed)
    if classes == 1:
        z = torch.randn(n, 1, generator=g) * 2
        labels = (torch.rand(n, generator=g) < torch.sigmoid(z[:, 0])).long()
    else:
        z = torch.randn(n, classes, generator=g) * 1.5
        labels = torch.multinomial(torch.softmax(z, 1), 1, generator=g)[:, 0]
    return z * 5, labels


@pytest.mark.parametrize("classes", [1, 3])
def test_temperature_scaling_recovers_t_and_lowers_ece_and_nll(classes: int) -> None:
    logits, labels = _overconfident(classes)
    found = calibrate(logits, labels)
    assert found.temperature == pytest.approx(5.0, rel=0.05)
    assert found.ece_after < 0.01 < 0.05 < found.ece_before
    assert found.nll_after < found.nll_before
    assert found.ece_after == pytest.approx(ece(logits, labels, found.temperature))
    assert found.nll_before == pytest.approx(nll(logits, labels))
    assert found.pixels == len(labels)
    # T > 0 keeps every predicted class: sign of one logit, argmax of several
    scaled = logits / found.temperature
    same = (scaled[:, 0] > 0) == (logits[:, 0] > 0) if classes == 1 else \
        scaled.argmax(1) == logits.argmax(1)
    assert bool(same.all())


def test_an_already_calibrated_model_keeps_t_near_one() -> None:
    logits, labels = _overconfident(1, seed=1)
    assert calibrate(logits / 5, labels).temperature == pytest.approx(1.0, abs=0.05)


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return unetkit.build_model("unet", in_channels=1, classes=1, filters=4, depth=2).eval()


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(3):
        y = (torch.rand(2, 16, 16, generator=g) < 0.5).long()
        y[:, :4] = IGNORE  # 64 ignored pixels per image
        out.append((torch.randn(2, 1, 16, 16, generator=g), y))
    return out


def test_collect_logits_leaves_ignore_out_and_bounds_the_sample() -> None:
    net, batches = _net(), _batches()
    logits, labels = collect_logits(net, batches, torch.device("cpu"))
    assert logits.shape == (3 * 2 * 12 * 16, 1) and labels.shape == (3 * 2 * 12 * 16,)
    with torch.no_grad():  # every kept pixel's logit is the model's own, in order
        want = torch.cat([net(x)[:, :, 4:].permute(0, 2, 3, 1).reshape(-1, 1)
                          for x, _ in batches])
    torch.testing.assert_close(logits, want)
    assert set(labels.tolist()) <= {0, 1}
    small, small_labels = collect_logits(net, batches, torch.device("cpu"), max_pixels=200)
    assert 0 < len(small_labels) <= 200 and len(small) == len(small_labels)
    assert IGNORE not in small_labels.tolist()


def test_artifact_round_trip_of_the_temperature(tmp_path: Path) -> None:
    found = TemperatureFit(1.7, 0.081, 0.024, 0.3, 0.2, 1000)
    assert found.line() == "calibrated: temperature 1.70, validation ECE 0.081 -> 0.024"
    save_model(_net(), tmp_path / "m", found.as_meta())
    model = load_model(tmp_path / "m")
    assert temperature_of(model.unetkit_meta) == 1.7
    assert model.unetkit_meta["calibration"]["ece_before"] == 0.081
    assert Predictor(model).meta["temperature"] == 1.7
    save_model(_net(), tmp_path / "old")
    assert temperature_of(load_model(tmp_path / "old").unetkit_meta) == 1.0


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 40x40 grey images with 4-class masks (the synthetic folder's classes)."""
    return write_folder(tmp_path_factory.mktemp("cal") / "data", count=6, size=(40, 40),
                        channels=1)


@pytest.mark.slow
def test_fit_calibrates_and_records_both_eces(data: Path, tmp_path: Path) -> None:
    config = FitConfig(data=str(data), epochs=1, size=[32, 32], batch_size=2,
                       model_options={"filters": 4, "depth": 2}, out=str(tmp_path / "run"))
    run = run_fit(config, quiet=True).run_dir
    meta = json.loads((run / "model" / "config.json").read_text())
    assert 0.05 <= meta["temperature"] <= 20
    fitted = meta["calibration"]
    assert 0 <= fitted["ece_after"] <= 1 and 0 <= fitted["ece_before"] <= 1
    assert fitted["nll_after"] <= fitted["nll_before"] + 1e-9  # T minimises the NLL
    assert fitted["pixels"] == 40 * 40  # the one validation image, every pixel
    summary = json.loads((run / "report" / "summary.json").read_text())
    assert summary["calibration"]["temperature"] == meta["temperature"]
    assert summary["calibration"]["fitted"] == fitted
    with Image.open(run / "report" / "reliability.png") as png:
        assert png.format == "PNG"


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--calibrate", "--no-calibrate"])
def test_the_cli_flag_and_the_printed_line(flag: str, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["fit", "--data", str(data), "--epochs", "1", "--size", "32",
                                   "--batch-size", "2", "--option", "filters=4", "--option",
                                   "depth=2", flag, "--out", str(out)])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "model" / "config.json").read_text())
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert np.isfinite(summary["calibration"]["ece"])
    if flag == "--no-calibrate":
        assert "temperature" not in meta and "calibration" not in meta
        assert "calibrated:" not in res.output
        assert summary["calibration"]["temperature"] is None
        return
    fitted = meta["calibration"]
    assert (f"calibrated: temperature {meta['temperature']:.2f}, validation ECE "
            f"{fitted['ece_before']:.3f} -> {fitted['ece_after']:.3f}") in res.output
