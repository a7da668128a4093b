"""`bench quality --compare`: reading two finished runs and saying which won, on what."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from unetkit.bench.compare import _scores
from unetkit.errors import UnetkitError, UsageError


def _run(root: Path, dice: float, val: list[str], binary: bool = True) -> Path:
    """A finished run directory as `fit` leaves it (multi-class runs have no "dice")."""
    (root / "report").mkdir(parents=True)
    scores = {"pixel_accuracy": dice - 0.03, "mean_dice": dice - 0.05, "images": len(val)}
    scores.update({"dice": dice} if binary else {"mean_dice_foreground": dice})
    (root / "report" / "summary.json").write_text(json.dumps(scores))
    (root / "splits.json").write_text(json.dumps({"train": ["a"], "val": val}))
    (root / "config.yaml").write_text(yaml.safe_dump({"model": "unet", "size": [64, 64]}))
    return root


def test_scores_read_the_run(tmp_path: Path) -> None:
    auto = _scores(_run(tmp_path / "auto", 0.93, ["x", "y"]), tmp_path / "auto.log")
    assert auto["scores"] == {"dice": 0.93, "pixel_accuracy": pytest.approx(0.90),
                              "mean_dice": pytest.approx(0.88)}
    assert auto["val_images"] == ["x", "y"] and auto["settings"]["size"] == [64, 64]


class _Finished:
    """A `fit` process that already ended well."""

    def poll(self) -> int:
        return 0

    def wait(self) -> int:
        return 0

    def kill(self) -> None:
        raise AssertionError("a finished run is never killed")


def _fake_fits(monkeypatch: pytest.MonkeyPatch, dice: dict[str, float],
               val: dict[str, list[str]], binary: bool = True
               ) -> list[tuple[list[str], str, list[int]]]:
    """Replace the two `unetkit fit` processes by ones that write finished runs at once;
    return what each was launched with (args, log name, cores it is pinned to)."""
    from unetkit.bench import compare

    launched: list[tuple[list[str], str, list[int]]] = []

    def launch(args: list[str], log: Path, cores: list[int]) -> _Finished:
        launched.append((list(args), log.name, list(cores)))
        side = "auto" if "--auto" in args else "defaults"
        run = _run(Path(args[args.index("--out") + 1]), dice[side], val[side], binary)
        if side == "auto":
            (run / "plan.yaml").write_text(yaml.safe_dump(
                {"decisions": {"val_split": {"value": 0.3, "reason": "test"}}}))
        log.write_text(f"{side} fit\n")
        return _Finished()

    monkeypatch.setattr(compare, "_launch", launch)
    monkeypatch.setattr(compare.time, "sleep", lambda s: None)
    return launched


def _compare(tmp_path: Path) -> tuple[str, dict]:
    from typer.testing import CliRunner

    from unetkit.cli import app

    (tmp_path / "data").mkdir()
    result = CliRunner().invoke(app, ["bench", "quality", "--compare", "--budget", "2m",
                                      "--data", str(tmp_path / "data"),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    return result.output, json.loads((tmp_path / "out" / "bench_compare.json").read_text())


def test_compare_json_scores_both_runs_on_the_same_images(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    launched = _fake_fits(monkeypatch, {"auto": 0.93, "defaults": 0.90},
                          {"auto": ["x", "y"], "defaults": ["y", "x"]})
    text, report = _compare(tmp_path)
    runs = tmp_path / "out" / "compare"
    # each side's scores are that run's own summary.json (not swapped, not mixed)
    for side in ("auto", "defaults"):
        summary = json.loads((runs / side / "report" / "summary.json").read_text())
        assert report[side]["scores"] == {k: summary[k] for k in
                                          ("dice", "pixel_accuracy", "mean_dice")}
        assert report[side]["val_images"] == json.loads(
            (runs / side / "splits.json").read_text())["val"]
    a, d = report["auto"]["scores"]["dice"], report["defaults"]["scores"]["dice"]
    assert report["metric"] == "dice" and report["gain"] == pytest.approx(a - d)
    assert report["gain"] == pytest.approx(0.03)  # auto minus defaults, not the reverse
    assert report["same_val_images"] is True and report["val_split"] == 0.3
    # the defaults run is told the plan's validation split, so both hold out the same images
    (auto_args, auto_log, t1), (def_args, def_log, t2) = launched
    assert auto_args[0] == "fit" and "--auto" in auto_args and auto_log == "auto.log"
    assert auto_args[auto_args.index("--budget") + 1] == "2m"
    assert def_args[def_args.index("--val-split") + 1] == "0.3" and def_log == "defaults.log"
    assert def_args[def_args.index("--max-time") + 1] == "2m" and "--auto" not in def_args
    for args in (auto_args, def_args):
        assert args[args.index("--data") + 1] == str(tmp_path / "data")
    assert len(t1) == len(t2) == report["threads_each"] >= 1
    assert not set(t1) & set(t2)  # each run pinned to its own cores
    assert "the same 2 validation images" in text
    assert "0.9300" in text and "0.9000" in text and "gain +0.0300" in text


def test_compare_reports_different_images_and_multiclass_metric(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_fits(monkeypatch, {"auto": 0.70, "defaults": 0.75},
               {"auto": ["x", "y"], "defaults": ["x", "z"]}, binary=False)
    text, report = _compare(tmp_path)
    assert report["same_val_images"] is False and "DIFFERENT 2 validation images" in text
    assert report["metric"] == "mean_dice_foreground"  # no single "dice" when multi-class
    assert report["gain"] == pytest.approx(0.70 - 0.75) and "gain -0.0500" in text


def test_missing_summary_names_the_log(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    with pytest.raises(UnetkitError, match="no report/summary.json; see .*auto.log"):
        _scores(tmp_path / "run", tmp_path / "auto.log")


def test_bad_budget_and_data(tmp_path: Path) -> None:
    from unetkit.bench.compare import run_compare

    with pytest.raises(UsageError, match="--budget 'soon'"):
        run_compare(tmp_path, "soon", tmp_path / "out")
    with pytest.raises(UsageError, match="--data .*missing does not exist"):
        run_compare(tmp_path / "missing", "1m", tmp_path / "out")


def test_launch_pins_the_process_to_its_cores(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The planner of the --auto side must see only its own share of the machine."""
    import os
    import sys

    from unetkit.bench import compare

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this platform")
    script = tmp_path / "fake_python"
    script.write_text(f"#!{sys.executable}\nimport os, sys\nopen(sys.argv[-1], 'w').write("
                      "' '.join(map(str, sorted(os.sched_getaffinity(0)))) + ' ' + "
                      "os.environ['OMP_NUM_THREADS'])\n")
    script.chmod(0o755)
    monkeypatch.setattr(compare.sys, "executable", str(script))
    core = sorted(os.sched_getaffinity(0))[-1]
    out = tmp_path / "seen.txt"
    compare._launch(["fit", str(out)], tmp_path / "log", [core]).wait()
    assert out.read_text() == f"{core} 1"
