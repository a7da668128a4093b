"""The bench commands: the speed JSON's shape and arithmetic, the reference U-Net, levers."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import pytest
import torch

SPEED_KEYS = {"reference_train_ips", "unetkit_train_ips", "train_ratio",
              "reference_infer_ips", "unetkit_infer_ips", "infer_ratio"}


QUICK = {"batch": 2, "size": [32, 32], "unet_filters": 8, "check_size": 32,
         "check_batch": 2, "data_images": 4, "data_image_size": 48}


def _ratio(num: float, den: float) -> pytest.approx:
    """What a recorded ratio must be: num / den, rounded to 3 decimals."""
    return pytest.approx(num / den, rel=0, abs=5.01e-4)


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One quick bench run on one thread; the cache variable and torch's thread count are
    put back afterwards (the module-scoped spelling of monkeypatch.setenv)."""
    from unetkit.bench.speed import SpeedOptions, run_speed

    before = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNETKIT_CACHE", str(tmp_path_factory.mktemp("bench-cache")))
        torch.set_num_threads(1)
        try:
            result = run_speed(SpeedOptions(quick=True, quiet=True, **QUICK))
            assert torch.get_num_threads() == 1  # the bench restores the process's setting
            yield result
        finally:
            torch.set_num_threads(before)


def test_speed_json_shape_and_ratios(quick_result: dict) -> None:
    r = quick_result
    s = r["settings"]
    assert {"classic", "mobilenet", "data", "settings", "levers"} <= set(r)
    for key in ("classic", "mobilenet"):
        block = r[key]
        assert set(block) >= SPEED_KEYS
        for phase in ("train", "infer"):
            ref, ours = block[f"reference_{phase}_ips"], block[f"unetkit_{phase}_ips"]
            assert ref > 0 and ours > 0
            assert block[f"{phase}_ratio"] == _ratio(ours, ref)
            # one interleaved round (quick): its ratio is the run's ratio
            rounds = block[f"{phase}_round_ratios"]
            assert len(rounds) == s["rounds"] == 1
            assert rounds[0] == pytest.approx(block[f"{phase}_ratio"], rel=2e-3, abs=1e-3)
            for who in ("reference", "unetkit"):
                peak = block[f"{who}_{phase}_peak_rss_mb"]
                assert peak > 0 and 0 <= block[f"{who}_{phase}_peak_extra_mb"] <= peak
    assert r["classic"]["reference_params"] == r["classic"]["unetkit_params"]  # same net
    assert r["mobilenet"]["reference_params"] == 6_628_945  # smp mobilenet_v2 keeps the head
    assert r["mobilenet"]["unetkit_params"] == 4_004_945
    assert r["mobilenet"]["smp_tu_mobilenetv2_100_params"] == 4_004_945
    mob = r["mobilenet"]
    assert mob["mobilenet_v2_unet_infer_ips"] > 0
    assert mob["mobilenet_v2_unet_infer_ratio_vs_reference"] == _ratio(
        mob["mobilenet_v2_unet_infer_ips"], mob["reference_infer_ips"])
    d = r["data"]
    assert d["cold_ips"] > 0 and d["cached_ips"] > 0
    assert d["cached_vs_cold"] == _ratio(d["cached_ips"], d["cold_ips"])
    assert (d["images"], d["image_size"], d["crop"], d["batch"]) == (4, 48, "32x32", 2)
    assert d["cached_epochs"] == 2 and d["threads"] == 1


def test_speed_settings_are_what_this_process_sees(quick_result: dict) -> None:
    from unetkit.device import (
        cpu_capabilities,
        cpu_flags,
        cpu_model,
        pick_device,
        resolve_precision,
    )

    s = quick_result["settings"]
    device = pick_device(None)
    assert s["device"] == device.type
    # the fixture's one thread, kept because quick mode does not probe 1 against 2
    assert s["threads"] == 1 and s["threads_chosen_by"] == "as set in this process"
    assert s["precision"] == resolve_precision("auto", device)
    shown = "fp32" if s["precision"] == "32" else s["precision"]
    assert quick_result["classic"]["unetkit"].endswith(f"channels_last, {shown}")
    assert s["cpu_flags"] == cpu_flags() and all(isinstance(f, str) for f in s["cpu_flags"])
    if cpu_capabilities() and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        assert "avx2" in s["cpu_flags"]  # what torch's kernels dispatch to is listed
    assert s["cpu"] == cpu_model() and s["cpu"] and s["cpu_count"] == os.cpu_count()
    assert s["torch"] == torch.__version__
    assert (s["batch"], s["size"], s["quick"], s["compile"]) == (2, [32, 32], True, False)
    assert s["compile_lever"] is False and s["segment_target_s"] == 0.0
    assert s["wall_s"] > 0


def test_run_speed_restores_the_thread_count() -> None:
    """--threads applies during the run only; nothing timed here (no families, no data)."""
    from unetkit.bench.speed import SpeedOptions, run_speed

    assert torch.get_num_threads() == 1  # tests/conftest.py's _one_thread
    r = run_speed(SpeedOptions(quick=True, quiet=True, threads=2, families=(), data=False))
    assert r["settings"]["threads"] == 2 and r["settings"]["threads_chosen_by"] == "--threads"
    assert torch.get_num_threads() == 1


def _check_lever(name: str, lev: dict, block: dict, phase: str) -> None:
    from unetkit.bench.results import AGREEMENT, WIN

    if lev["verdict"] == "failed":  # could not run here (e.g. an optional runtime)
        assert lev.get("error"), name
        return
    assert lev["ips"] > 0
    assert lev["ratio_vs_reference"] == _ratio(lev["ips"], block[f"reference_{phase}_ips"])
    assert lev["ratio_vs_unetkit"] == _ratio(lev["ips"], block[f"unetkit_{phase}_ips"])
    check = lev["check"]
    if "mask_agreement" in check:  # against the fp32 eager masks of the trained model
        assert 0 <= check["mask_agreement"] <= 1 and check["max_abs_prob_diff"] >= 0
        assert check["passed"] == (check["mask_agreement"] >= AGREEMENT), name
    expected = ("inaccurate" if not check["passed"] else
                "won" if lev["ratio_vs_unetkit"] >= WIN else "lost")
    assert lev["verdict"] == expected, name


def test_levers_report_ratio_and_check(quick_result: dict) -> None:
    for fam in ("classic", "mobilenet"):
        block, levers = quick_result[fam], quick_result["levers"][fam]
        assert {"nchw", "channels_last_model"} <= set(levers["train"])
        assert {"nchw", "bn_fold"} <= set(levers["infer"])
        assert "compile" not in levers["infer"]  # quick: no torch.compile lever
        for phase in ("train", "infer"):
            for name, lev in levers[phase].items():
                _check_lever(f"{fam} {phase} {name}", lev, block, phase)
        # the nchw inference lever is the accuracy baseline's own computation: no difference
        nchw = levers["infer"]["nchw"]["check"]
        assert nchw["max_abs_prob_diff"] == 0.0 and nchw["mask_agreement"] == 1.0
        onnx = levers["infer"].get("onnxruntime", {})
        if onnx.get("verdict", "failed") != "failed":  # float32 too: tiny differences only
            assert onnx["check"]["max_abs_prob_diff"] <= 1e-3
        # unetkit's own predict path against the same baseline, at its resolved precision
        infer = block["infer_check"]
        assert infer["passed"] == (infer["mask_agreement"] >= 0.995)
        assert 0 <= infer["foreground_fraction"] <= 1
        if quick_result["settings"]["precision"] == "32":
            assert infer["max_abs_prob_diff"] <= 1e-4
        # predict's default engine: at least as fast as the torch row, its ratio its own
        auto = block["predict_default"]
        assert auto["ips"] == max(auto["candidates_ips"].values()) >= block["unetkit_infer_ips"]
        assert auto["ratio"] == _ratio(auto["ips"], block["reference_infer_ips"])
    fold = quick_result["levers"]["classic"]["infer"]["bn_fold"]
    assert fold["check"]["mask_agreement"] >= 0.995 and "18 of 18" in fold["note"]
    # the training check: unetkit's step against the plain fp32 loop, same weights and data
    check = quick_result["classic"]["train_check"]
    assert (check["steps"], check["batch"], check["size"]) == (3, 2, 32)
    assert math.isfinite(check["fp32_eager_loss"]) and math.isfinite(check["unetkit_loss"])
    assert check["delta"] == pytest.approx(check["unetkit_loss"] - check["fp32_eager_loss"],
                                           abs=2e-4)
    assert check["tolerance"] >= 0.02
    assert check["passed"] == (abs(check["delta"]) <= check["tolerance"])
    assert check["passed"]  # the same computation: within noise


def test_interleave_times_every_variant_each_round_in_alternating_order() -> None:
    import time

    from unetkit.bench.measure import Variant, interleave, round_ratios

    calls: list[str] = []

    def step(name: str, seconds: float) -> None:
        calls.append(name)
        time.sleep(seconds)

    a = Variant("a", lambda: step("a", 0.002), images=3)
    b = Variant("b", lambda: step("b", 0.004), images=5)
    broken = Variant("broken", lambda: 1 / 0, images=1)
    interleave([a, broken, b], torch.device("cpu"), rounds=3, label="t", quiet=True,
               optional={"broken"})
    # warm-up, then rounds a b / b a / a b, then one untimed memory step each
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "a", "b"]
    assert broken.error is not None and "ZeroDivisionError" in broken.error
    assert broken.times == [] and broken.ips == 0.0
    for v, seconds in ((a, 0.002), (b, 0.004)):
        assert v.steps == 1 and v.steps_done == 3 and len(v.times) == len(v.round_ips) == 3
        # images/s counts every image timed: images per step x steps x rounds
        assert v.ips == pytest.approx(v.images * v.steps_done / sum(v.times))
        assert 0 < v.ips <= v.images / seconds
        assert v.round_ips == pytest.approx([v.images / t for t in v.times])
    assert round_ratios(a, b) == pytest.approx([rb / ra for ra, rb in
                                                zip(a.round_ips, b.round_ips, strict=True)],
                                               abs=5.01e-4)
    with pytest.raises(ZeroDivisionError):  # a variant that is not optional must not fail
        interleave([Variant("c", lambda: 1 / 0, images=1)], torch.device("cpu"), 1, "t",
                   quiet=True)


def test_interleave_repeats_short_steps_to_fill_a_segment() -> None:
    import time

    from unetkit.bench.measure import Variant, interleave

    v = Variant("v", lambda: time.sleep(0.005), images=2)
    interleave([v], torch.device("cpu"), rounds=2, label="t", quiet=True, target_s=0.02,
               max_steps=3)
    assert 1 <= v.steps <= 3 and v.steps_done == 2 * v.steps
    assert v.ips == pytest.approx(v.images * 2 * v.steps / sum(v.times))
    assert v.ips <= v.images / 0.005


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


def _lever(ips: float, passed: bool) -> dict:
    return {"ips": ips, "check": {"mask_agreement": 0.999 if passed else 0.9,
                                  "passed": passed}}


@pytest.mark.parametrize("bf16", ["0", "1"])
def test_predict_default_is_the_fastest_engine_that_passed(monkeypatch, bf16: str) -> None:
    from unetkit.bench.results import predict_default

    monkeypatch.setenv("UNETKIT_CPU_BF16", bf16)
    precision = "bf16-mixed" if bf16 == "1" else "32"
    block = {"reference_infer_ips": 10.0, "unetkit_infer_ips": 20.0}
    levers = {"onnxruntime": _lever(15.0, True), "onnxruntime_int8": _lever(40.0, True),
              "bf16": _lever(90.0, True)}
    got = predict_default(block, levers, precision)
    # the bf16 lever counts only as a second torch row when the run itself is float32 and
    # the CPU has bf16; here it is either the unetkit row (bf16) or not a candidate (32)
    assert got["engine"] == "onnx int8" and got["ips"] == 40.0 and got["ratio"] == 4.0
    assert set(got["candidates_ips"]) == {f"torch {precision}", "onnx 32", "onnx int8"}
    levers["onnxruntime_int8"] = _lever(40.0, False)  # disagreeing masks: never chosen
    got = predict_default(block, levers, precision)
    assert got["engine"] == f"torch {precision}" and got["ratio"] == 2.0
    assert "onnx int8" not in got["candidates_ips"]
