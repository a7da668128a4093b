"""The model card states the run's real numbers: summary.json's metrics, config.yaml's
settings, the split counts, and how to load the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from unetkit.config import FitConfig
from unetkit.data.synthetic import write_folder
from unetkit.pipeline import run_fit
from unetkit.report.model_card import write_model_card


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("card")
    with pytest.MonkeyPatch.context() as mp:  # module scope: the autouse cache fixture is not
        mp.setenv("UNETKIT_CACHE", str(root / "cache"))  # active yet
        data = write_folder(root / "data", count=6, size=(40, 40), channels=1)
        config = FitConfig(data=str(data), epochs=1, size=[32, 32], batch_size=2,
                           model_options={"filters": 4, "depth": 2}, out=str(root / "run"))
        return run_fit(config, quiet=True).run_dir


def test_every_run_writes_a_card_with_the_real_numbers(run_dir: Path) -> None:
    card = (run_dir / "model" / "README.md").read_text()
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    meta = json.loads((run_dir / "model" / "config.json").read_text())
    for key in ("mean_dice", "mean_iou", "pixel_accuracy", "micro_dice"):
        assert f"| {key} | {summary[key]:.4f} |" in card  # the report's numbers, rounded
    for name, values in summary["per_class"].items():
        assert f"| {name} | {values['dice']:.4f} | {values['iou']:.4f} |" in card
    assert f"{summary['images']} images, each scored at its original size" in card
    assert f"| batch size | {config['batch_size']} |" in card
    assert f"| precision | {config['precision']} |" in card
    assert f"| training size | {config['size'][0]}x{config['size'][1]} |" in card
    assert f"| best epoch | {meta['best_epoch']} |" in card
    assert "| epochs run | 1 |" in card
    assert f"- Path: `{config['data']}`" in card
    assert "train 5, val 1, test 0" in card
    assert "40x40 (6)" in card
    assert ", ".join(f"`{n}`" for n in meta["class_names"]) in card
    assert "trained on 5 images of one data set and validated on 1" in card
    assert "macro mean over all classes, background included" in card  # evaluate's semantics
    assert "unetkit.load_model(" in card and "unetkit predict" in card
    assert card.startswith("---\nlibrary_name: unetkit\n")


def test_the_card_is_rewritten_atomically_and_survives_missing_files(run_dir: Path,
                                                                     tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    (bare / "model").mkdir(parents=True)
    (bare / "model" / "config.json").write_text((run_dir / "model" / "config.json").read_text())
    path = write_model_card(bare)
    text = path.read_text()
    assert "No report/summary.json was written" in text
    assert not list((bare / "model").glob("*.tmp*"))
