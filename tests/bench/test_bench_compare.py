"""`bench quality --compare`: reading two finished runs and saying which won, on what."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from unetkit.bench.compare import _scores, format_compare
from unetkit.errors import UnetkitError, UsageError


def _run(root: Path, dice: float, val: list[str]) -> Path:
    (root / "report").mkdir(parents=True)
    (root / "report" / "summary.json").write_text(json.dumps(
        {"dice": dice, "pixel_accuracy": dice - 0.03, "mean_dice": dice - 0.05, "images": 2}))
    (root / "splits.json").write_text(json.dumps({"train": ["a"], "val": val}))
    (root / "config.yaml").write_text(yaml.safe_dump({"model": "unet", "size": [64, 64]}))
    return root


def test_scores_and_table(tmp_path: Path) -> None:
    auto = _scores(_run(tmp_path / "auto", 0.93, ["x", "y"]), tmp_path / "auto.log")
    defaults = _scores(_run(tmp_path / "defaults", 0.90, ["y", "x"]), tmp_path / "d.log")
    assert auto["scores"] == {"dice": 0.93, "pixel_accuracy": pytest.approx(0.90),
                              "mean_dice": pytest.approx(0.88)}
    assert auto["settings"]["size"] == [64, 64]
    result = {"data": "d", "budget": "2m", "threads_each": 1, "auto": auto,
              "defaults": defaults, "same_val_images": True, "metric": "dice",
              "gain": 0.93 - 0.90}
    text = format_compare(result)
    assert "the same 2 validation images" in text
    assert "0.9300" in text and "0.9000" in text and "gain +0.0300" in text


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
