"""Calibration in evaluate: ECE and reliability bins against hand-computed values, error
capture by uncertainty against exact (sort-based) computations, the temperature applied in
Predictor and baked into the ONNX export, and the metrics JSON and reliability diagram."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from infer_fixtures import tiny_model
from PIL import Image
from scipy.stats import mannwhitneyu
from typer.testing import CliRunner

from unetkit.calibration import CalibrationStats, confidence_and_prediction
from unetkit.cli import app
from unetkit.infer.calibration import ImageCalibration, plot_reliability
from unetkit.infer.evaluate import evaluate
from unetkit.infer.onnx import export_onnx, read_metadata
from unetkit.infer.predict import Predictor
from unetkit.models.artifact import load_model, save_model
from unetkit.scoring import IGNORE


def _stats(confidence: list[float] | np.ndarray, correct: list[bool] | np.ndarray,
           uncertainty: np.ndarray | None = None) -> CalibrationStats:
    stats = CalibrationStats()
    stats.add(np.asarray(confidence), np.asarray(correct), uncertainty)
    return stats


def test_ece_of_constructed_probabilities() -> None:
    # confidence 0.8, 8 of 10 right: perfectly calibrated
    assert _stats([0.8] * 10, [True] * 8 + [False] * 2).ece() == pytest.approx(0.0, abs=1e-12)
    # confidence 0.9, half right: |0.5 - 0.9| = 0.4
    assert _stats([0.9] * 10, [True, False] * 5).ece() == pytest.approx(0.4)
    # two bins, half the pixels each: 0.5 * |1 - 0.6| + 0.5 * |0.9 - 0.95| = 0.225
    conf = [0.6] * 10 + [0.95] * 10
    right = [True] * 10 + [True] * 9 + [False]
    stats = _stats(conf, right)
    assert stats.ece() == pytest.approx(0.225)
    rows = stats.table()
    assert len(rows) == 15 and stats.pixels == 20
    assert rows[9] == {"lower": 0.6, "upper": 10 / 15, "count": 10, "confidence":
                       pytest.approx(0.6), "accuracy": 1.0}
    assert rows[14]["count"] == 10 and rows[14]["accuracy"] == pytest.approx(0.9)
    assert rows[0] == {"lower": 0.0, "upper": 1 / 15, "count": 0, "confidence": None,
                       "accuracy": None}
    assert CalibrationStats().ece() is None  # no pixels: no ECE


def test_binary_confidence_is_that_of_the_predicted_class() -> None:
    conf, pred = confidence_and_prediction(np.array([[0.2, 0.7, 0.5]]), binary=True)
    np.testing.assert_allclose(conf, [0.8, 0.7, 0.5])
    assert pred.tolist() == [0, 1, 0]  # as masks threshold: p > 0.5
    conf, pred = confidence_and_prediction(np.array([[0.1, 0.6], [0.3, 0.3], [0.6, 0.1]]),
                                           binary=False)
    np.testing.assert_allclose(conf, [0.6, 0.6])
    assert pred.tolist() == [2, 0]


def _toy(n: int, seed: int, related: bool) -> tuple[np.ndarray, np.ndarray]:
    """Log-uniform uncertainties over 7 decades and error flags (more likely where more
    uncertain when `related`)."""
    rng = np.random.default_rng(seed)
    u = 10 ** rng.uniform(-7.5, np.log10(np.log(2)), n)
    rank = np.argsort(np.argsort(u)) / n
    p_error = 0.05 + 0.5 * rank if related else np.full(n, 0.3)
    return u, rng.random(n) < p_error


def _exact_top(u: np.ndarray, errors: np.ndarray, fraction: float) -> float:
    k = int(round(fraction * len(u)))
    top = np.argsort(-u)[:k]
    return errors[top].sum() / errors.sum()


def test_auroc_and_top_capture_match_the_exact_computation() -> None:
    for seed in (0, 1):
        u, err = _toy(20_000, seed, related=True)
        stats = _stats(np.full(len(u), 0.9), ~err, u)
        exact = mannwhitneyu(u[err], u[~err]).statistic / (err.sum() * (~err).sum())
        assert stats.uncertainty_auroc() == pytest.approx(exact, abs=1e-3)
        assert 0.6 < exact < 0.9  # the toy is informative, not trivial
        assert stats.errors_in_top(0.1) == pytest.approx(_exact_top(u, err, 0.1), abs=2e-3)


def test_auroc_is_one_when_errors_are_the_most_uncertain_and_half_when_unrelated() -> None:
    u = np.linspace(1e-6, 0.69, 1000)
    err = np.arange(1000) >= 950  # the 50 most uncertain pixels are the errors
    stats = _stats(np.full(1000, 0.9), ~err, u)
    # pixels sharing the boundary's fine bin count as ties: 1 within the bin resolution
    assert stats.uncertainty_auroc() == pytest.approx(1.0, abs=1e-3)
    assert stats.errors_in_top(0.1) == pytest.approx(1.0)  # all 50 are in the top 100
    u, err = _toy(50_000, 2, related=False)
    assert _stats(np.full(len(u), 0.9), ~err, u).uncertainty_auroc() == pytest.approx(0.5,
                                                                                      abs=0.02)


def test_top_capture_of_a_constructed_case() -> None:
    # 1000 pixels, 100 of them uncertain (entropy 0.5, the rest 1e-3); 40 errors among the
    # 100 and 60 among the other 900: the top 10% hold 40% of the errors
    u = np.where(np.arange(1000) >= 900, 0.5, 1e-3)
    err = np.zeros(1000, bool)
    err[900:940] = True
    err[np.arange(0, 900, 15)] = True
    assert err.sum() == 100
    stats = _stats(np.full(1000, 0.9), ~err, u)
    assert stats.errors_in_top(0.1) == pytest.approx(0.4, abs=1e-9)
    assert _stats([0.9] * 5, [True] * 5, np.ones(5) * 0.1).errors_in_top() is None  # no errors


def test_image_calibration_leaves_ignore_pixels_out() -> None:
    probs = np.array([[[0.9, 0.2], [0.6, 0.99]]], np.float32)  # binary: foreground p
    truth = np.array([[1, IGNORE], [0, 1]], np.uint8)
    cal = ImageCalibration(binary=True, num_classes=2)
    cal.add(probs, truth)
    out = cal.summary(temperature=None)
    assert out["pixels"] == 3 and out["temperature"] is None
    # pixels: conf 0.9 right, conf 0.6 wrong (predicted 1, truth 0), conf 0.99 right
    assert out["ece"] == pytest.approx((abs(1 - 0.9) + abs(0 - 0.6) + abs(1 - 0.99)) / 3,
                                       abs=1e-6)
    assert out["uncertainty_auroc"] == pytest.approx(1.0)  # the error is the most uncertain
    assert set(out) >= {"ece", "bins", "uncertainty_auroc", "errors_in_top10pct_uncertain",
                        "temperature"}


def _calibrated(temperature: float, classes: int = 1) -> torch.nn.Module:
    model = tiny_model(classes=classes)
    model.unetkit_meta = {**model.unetkit_meta, "temperature": temperature}
    return model


def test_predictor_divides_logits_by_the_temperature_and_keeps_the_masks() -> None:
    image = np.random.default_rng(0).integers(0, 255, (40, 44, 3), dtype=np.uint8)
    for classes in (1, 3):
        plain = Predictor(tiny_model(classes=classes), precision="32")
        scaled = Predictor(_calibrated(2.5, classes), precision="32")
        p_plain, p_scaled = plain.probabilities(image), scaled.probabilities(image)
        z = torch.from_numpy(p_plain).double()  # back to logits (up to a constant), / T
        expected = torch.sigmoid(torch.logit(z) / 2.5) if classes == 1 else \
            torch.softmax(z.log() / 2.5, 0)
        np.testing.assert_allclose(p_scaled, expected.numpy(), atol=1e-4)
        assert not np.allclose(p_plain, p_scaled, atol=1e-2)  # the probabilities move...
        np.testing.assert_array_equal(plain.mask_from_probabilities(p_plain),  # ...masks don't
                                      scaled.mask_from_probabilities(p_scaled))
        assert 0.1 < plain.mask_from_probabilities(p_plain).mean() < 0.9 or classes == 3


def test_onnx_export_bakes_the_temperature_in() -> None:
    model = _calibrated(3.0)
    result = export_onnx(model)
    assert result.max_abs_diff <= 1e-4  # torch with T against onnxruntime with T
    assert json.loads(read_metadata(result.data)["temperature"]) == 3.0
    image = np.random.default_rng(1).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    torch_probs = Predictor(model, precision="32").probabilities(image)
    onnx_probs = Predictor(model, engine="onnx").probabilities(image)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4)
    raw = export_onnx(model, calibrated=False)
    assert json.loads(read_metadata(raw.data)["temperature"]) == 1.0
    uncalibrated = Predictor(tiny_model(), precision="32").probabilities(image)  # T = 1
    np.testing.assert_allclose(Predictor(_onnx_engine(raw.data)).probabilities(image),
                               uncalibrated, atol=1e-4)


def _onnx_engine(data: bytes):
    from unetkit.infer.onnx import OnnxEngine, make_session

    return OnnxEngine(make_session(data, cpu_only=True))


def test_artifacts_without_a_temperature_load_uncalibrated(tmp_path: Path) -> None:
    save_model(tiny_model(), tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    assert "temperature" not in config  # as every artifact before calibration
    model = load_model(tmp_path / "old")
    image = np.random.default_rng(2).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(Predictor(model, precision="32").probabilities(image),
                               Predictor(tiny_model(), precision="32").probabilities(image),
                               atol=1e-6)
    config["temperature"] = -1
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    from unetkit.errors import UnetkitError

    with pytest.raises(UnetkitError, match="temperature -1 must be a positive number"):
        Predictor(load_model(tmp_path / "old")).probabilities(image)


def test_evaluate_reports_calibration_and_writes_the_diagram(tmp_path: Path,
                                                             synthetic_folder: Path) -> None:
    run = tmp_path / "run"
    save_model(_calibrated(2.0), run / "model")
    res = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(synthetic_folder),
                                   "--json", "--out", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    cal = metrics["calibration"]
    assert cal["temperature"] == 2.0 and 0 <= cal["ece"] <= 1
    assert len(cal["bins"]) == 15 and sum(b["count"] for b in cal["bins"]) == cal["pixels"]
    assert cal["pixels"] == 8 * 48 * 64  # every pixel of the 8 images (none ignored)
    assert 0 <= cal["uncertainty_auroc"] <= 1 and 0 <= cal["errors_in_top10pct_uncertain"] <= 1
    with Image.open(tmp_path / "eval" / "reliability.png") as png:
        assert png.format == "PNG" and png.size[0] > 300
    plain = evaluate(tiny_model(), synthetic_folder, split="all").metrics
    assert plain["calibration"]["temperature"] is None
    assert plain["calibration"]["ece"] != pytest.approx(cal["ece"])  # T changed the probs
    assert plain["dice"] == pytest.approx(metrics["dice"], abs=1e-12)  # but not the masks


def test_reliability_diagram_needs_scored_pixels(tmp_path: Path) -> None:
    plot_reliability(CalibrationStats().summary(), tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
    plot_reliability({**_stats([0.7, 0.95], [True, False]).summary(), "temperature": 1.5},
                     tmp_path / "r.png")
    with Image.open(tmp_path / "r.png") as png:
        assert png.format == "PNG"
