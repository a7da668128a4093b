"""The bench commands: the speed JSON's shape and arithmetic, the reference U-Net, levers."""

from __future__ import annotations

import math

import pytest
import torch

SPEED_KEYS = {"reference_train_ips", "unetkit_train_ips", "train_ratio",
              "reference_infer_ips", "unetkit_infer_ips", "infer_ratio"}


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import os

    from unetkit.bench.speed import SpeedOptions, run_speed

    os.environ["UNETKIT_CACHE"] = str(tmp_path_factory.mktemp("bench-cache"))
    torch.set_num_threads(1)
    opts = SpeedOptions(batch=2, size=[32, 32], quick=True, unet_filters=8, check_size=32,
                        check_batch=2, data_images=4, data_image_size=48, quiet=True)
    return run_speed(opts)


def test_speed_json_shape_and_ratios(quick_result: dict) -> None:
    r = quick_result
    assert {"classic", "mobilenet", "data", "settings", "levers"} <= set(r)
    for key in ("classic", "mobilenet"):
        block = r[key]
        assert set(block) >= SPEED_KEYS
        for phase in ("train", "infer"):
            ref, ours = block[f"reference_{phase}_ips"], block[f"unetkit_{phase}_ips"]
            assert ref > 0 and ours > 0
            assert block[f"{phase}_ratio"] == pytest.approx(ours / ref, rel=2e-3, abs=1e-3)
            assert block[f"unetkit_{phase}_peak_rss_mb"] > 0
    assert r["mobilenet"]["reference_params"] == 6_628_945  # smp mobilenet_v2 keeps the head
    assert r["mobilenet"]["unetkit_params"] == 4_004_945
    assert r["mobilenet"]["smp_tu_mobilenetv2_100_params"] == 4_004_945
    assert r["mobilenet"]["mobilenet_v2_unet_infer_ips"] > 0
    assert {"cold_ips", "cached_ips"} <= set(r["data"])
    assert r["data"]["cold_ips"] > 0 and r["data"]["cached_ips"] > 0
    s = r["settings"]
    for key in ("precision", "memory_format", "compile", "threads", "device", "cpu_flags"):
        assert key in s
    assert s["threads"] == 1 and s["quick"] is True


def test_levers_report_ratio_and_check(quick_result: dict) -> None:
    lev = quick_result["levers"]["classic"]
    block = quick_result["classic"]
    fold = lev["infer"]["bn_fold"]
    assert fold["verdict"] in ("won", "lost")
    assert fold["check"]["mask_agreement"] >= 0.995
    assert fold["ratio_vs_reference"] == pytest.approx(
        fold["ips"] / block["reference_infer_ips"], rel=2e-3, abs=1e-3)
    assert lev["train"]["nchw"]["verdict"] in ("won", "lost")
    check = block["train_check"]
    assert check["steps"] == 3 and math.isfinite(check["fp32_eager_loss"])


def test_speed_table_mentions_every_block(quick_result: dict) -> None:
    from unetkit.bench.speed_table import format_table

    text = format_table(quick_result)
    for word in ("classic", "mobilenet", "data pipeline", "bn_fold", "ratio"):
        assert word in text


def test_reference_unet_matches_unetkit_parameter_count() -> None:
    import unetkit
    from unetkit.bench.reference import ReferenceUNet
    from unetkit.models.registry import count_parameters

    with torch.device("meta"):
        ref = ReferenceUNet(3, 1)
        ours = unetkit.build_model("unet", norm="batch")
    assert count_parameters(ref) == count_parameters(ours) == 31_037_633
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in ref.modules()) == 18


def test_fold_batchnorm_keeps_outputs() -> None:
    import unetkit
    from unetkit.bench.levers import fold_batchnorm

    torch.manual_seed(0)
    model = unetkit.build_model("unet", norm="batch", filters=4)
    model.train()
    with torch.no_grad():  # non-trivial running statistics
        model(torch.randn(2, 3, 32, 32))
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    folded, n, total = fold_batchnorm(model, x[:1])
    assert n == total == 18
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)


def test_quality_curve_and_plot(tmp_path) -> None:
    from unetkit.bench.quality import format_quality, plot_curve, read_curve, summarize

    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text("epoch,step,val/dice,val/mean_dice,elapsed_s\n"
                        "0,5,0.5,0.4,10.0\n1,10,0.8,0.7,20.5\n2,15,0.78,0.69,31.0\n")
    column, points = read_curve(csv_path)
    assert column == "val/dice" and [p["elapsed_s"] for p in points] == [10.0, 20.5, 31.0]
    summary = summarize(column, points)
    assert summary["best_dice"] == 0.8 and summary["best_at_s"] == 20.5
    assert summary["time_to_90pct_of_best_s"] == 20.5
    plot_curve(points, tmp_path / "bench_quality.png", "test")
    assert (tmp_path / "bench_quality.png").stat().st_size > 0
    text = format_quality({"data": "d", "budget": "1m", "epochs": 3, "wall_s": 40.0,
                           "plot": None, **summary})
    assert "0.8000" in text


def test_quality_without_data_is_one_sentence(monkeypatch) -> None:
    from typer.testing import CliRunner

    from unetkit.bench import quality
    from unetkit.cli import app

    monkeypatch.setattr(quality, "default_data", lambda: None)
    result = CliRunner().invoke(app, ["bench", "quality", "--budget", "1m"])
    assert result.exit_code == 2
    assert "--data" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args", [["bench"], ["bench", "speed"], ["bench", "data"],
                                  ["bench", "quality"]])
def test_bench_help_has_an_example(args: list[str]) -> None:
    from typer.testing import CliRunner

    from unetkit.cli import app

    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0
    assert "Example: unetkit bench" in result.output
