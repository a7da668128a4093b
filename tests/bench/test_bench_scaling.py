"""`unetkit bench scaling` and bench speed's "predict_scaling": the table's structure and
arithmetic, at tiny sizes (each size is a fresh Python process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from unetkit.bench.scaling import MB, format_scaling, relative, run_scaling
from unetkit.cli import app
from unetkit.errors import UsageError

runner = CliRunner()


def _row(side: int, seconds: float, tiles: int, extra: float) -> dict:
    mp = side * side / 1e6
    return {"side": side, "megapixels": mp, "tiles": tiles, "seconds": seconds,
            "peak_minus_baseline_mb": extra, "image_mb": side * side / MB,
            "mask_mb": side * side / MB, "peak_rss_mb": 900.0}


def test_relative_figures_by_hand() -> None:
    rows = [{"side": 512, "error": "the 512x512 run failed (exit code 1)"},
            _row(1024, 2.0, 9, 160.0), _row(2048, 6.0, 25, 170.0)]
    goals = relative(rows, 512)
    small, big = rows[1], rows[2]
    assert goals["reference_side"] == 1024  # the failed size is left out
    assert small["time_vs_linear"] == 1.0
    # 6 s for 4x the pixels of 2 s: 0.75 of linear; per tile-MP 6/25 against 2/9
    assert big["time_vs_linear"] == pytest.approx(0.75, abs=1e-3)
    assert big["tile_time_vs_linear"] == pytest.approx((6 / 25) / (2 / 9), abs=1e-3)
    assert big["beyond_image_and_mask_mb"] == 162.0  # 170 - 4 - 4
    assert goals["time_within_goal"] and goals["time_max_deviation"] == 0.25
    assert goals["memory_beyond_image_and_mask_mb"] == {"min": 158.0, "max": 162.0}
    assert "512x512 run failed" in format_scaling({"sizes": rows, "goals": goals})


@pytest.mark.slow
def test_bench_scaling_command_writes_and_prints_the_table(tmp_path: Path) -> None:
    res = runner.invoke(app, ["bench", "scaling", "--sizes", "256,128", "--tile", "64",
                              "--threads", "1", "--json", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result == json.loads((tmp_path / "bench_scaling.json").read_text())
    small, big = result["sizes"]
    assert [small["side"], big["side"]] == [128, 256]  # sorted
    assert [small["tiles"], big["tiles"]] == [9, 25]  # 3x3 and 5x5 tiles of 64
    for r in (small, big):
        assert r["image_mb"] == r["mask_mb"] == round(r["side"] ** 2 / MB, 1)
        assert r["seconds"] > 0 and r["threads"] == 1 and r["repeats"] >= 1
        assert r["peak_rss_mb"] >= r["baseline_rss_mb"] > 100  # torch is loaded
        assert r["peak_minus_baseline_mb"] == pytest.approx(
            r["peak_rss_mb"] - r["baseline_rss_mb"], abs=0.2)
    assert small["time_vs_linear"] == 1.0
    assert big["time_vs_linear"] == pytest.approx(big["s_per_mp"] / small["s_per_mp"],
                                                  abs=2e-3)
    assert result["settings"]["tile"] == 64 and result["settings"]["threads"] == 1
    assert "predict scaling" in res.stderr and "   256" in res.stderr


def test_bad_sizes_are_usage_errors() -> None:
    res = runner.invoke(app, ["bench", "scaling", "--sizes", "1k,4k"])
    assert res.exit_code == 2 and "--sizes '1k,4k' must be whole numbers" in res.stderr
    with pytest.raises(UsageError, match="at least 32 pixels"):
        run_scaling([16])


@pytest.mark.slow
def test_bench_speed_carries_the_scaling_table(tmp_path: Path) -> None:
    from unetkit.bench.speed import SpeedOptions, run_speed
    from unetkit.bench.speed_table import format_table

    assert SpeedOptions(quick=True).resolved().scaling is False  # quick runs skip it
    assert SpeedOptions().resolved().scaling is True
    result = run_speed(SpeedOptions(quick=True, families=(), data=False, levers=False,
                                    scaling=True, scaling_sizes=(96,), threads=1,
                                    quiet=True))
    rows = result["predict_scaling"]["sizes"]
    assert [r["side"] for r in rows] == [96] and rows[0]["tiles"] == 1  # one 512 tile
    assert "predict scaling" in format_table(result)
