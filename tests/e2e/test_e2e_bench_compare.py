"""`bench quality --compare` end to end: two real `fit` processes, one report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from unetkit.cli import app


@pytest.mark.slow
def test_compare_trains_both_on_the_same_validation_images(tmp_path: Path) -> None:
    from unetkit.data.synthetic import write_folder

    data = write_folder(tmp_path / "synth", count=12, size=(32, 32), channels=3, seed=2)
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["bench", "quality", "--compare", "--budget", "45s",
                                      "--data", str(data), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bench_compare.json").read_text())
    assert report["same_val_images"] and report["auto"]["val_images"]
    for side in ("auto", "defaults"):
        assert 0 <= report[side]["scores"][report["metric"]] <= 1
        assert (out / "compare" / side / "model" / "model.safetensors").is_file()
    assert (out / "compare" / "auto" / "plan.yaml").is_file()
    assert report["gain"] == pytest.approx(report["auto"]["scores"][report["metric"]]
                                           - report["defaults"]["scores"][report["metric"]])
