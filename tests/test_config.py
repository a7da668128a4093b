"""FitConfig is validated where it is made (flags, --config files, the API): one sentence
naming the flag and the config key, before any data is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from unetkit.config import FitConfig
from unetkit.errors import UsageError


@pytest.mark.parametrize(("values", "message"), [
    ({"epochs": 0}, "--epochs 0 must be a whole number of at least 1 (config key epochs)."),
    ({"batch_size": "8"}, "--batch-size '8' must be a whole number"),
    ({"folds": 1}, "--folds 1 must be a whole number of at least 2"),
    ({"val_split": 1.5}, "--val-split 1.5 must be a fraction in [0, 1)."),
    ({"val_split": 0.6, "test_split": 0.5}, "leave nothing to train on"),
    ({"augment": "heavy"}, "--augment 'heavy' is unknown; choose one of none, default, strong, "
     "natural."),
    ({"rare_crops": 1.5}, "--rare-crops 1.5 must be a share from 0 to 1."),
    ({"ema": 1.0}, "--ema 1.0 must be a decay from 0 (off) to below 1, e.g. 0.99."),
    ({"precision": "fp16"}, "--precision 'fp16' is unknown"),
    ({"lr": -1.0}, "--lr -1.0 must be a positive number or auto."),
    ({"max_time": "ten minutes"}, "--max-time 'ten minutes' is not a duration"),
    ({"model_options": ["filters=8"]}, "Config key model_options must be a mapping"),
    ({"size": "3x3"}, "--size '3x3' is too small"),
])
def test_bad_values_are_refused_naming_the_flag(values: dict, message: str) -> None:
    with pytest.raises(UsageError) as err:
        FitConfig.from_dict(values)
    assert message in str(err.value)


def test_a_config_file_round_trips_and_is_checked_on_load(tmp_path: Path) -> None:
    config = FitConfig(data="d", epochs=3, size=[64, 96], lr="auto", val_split=0.25)
    config.save(tmp_path / "c.yaml")
    assert FitConfig.load(tmp_path / "c.yaml") == config
    (tmp_path / "bad.yaml").write_text("data: d\nepochs: -2\n")
    with pytest.raises(UsageError, match="--epochs -2 must be a whole number"):
        FitConfig.load(tmp_path / "bad.yaml")
    assert FitConfig.from_dict({"size": "128"}).size == [128, 128]  # normalised on load


def test_loss_options_come_from_a_real_flag(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from unetkit.cli import app

    res = CliRunner().invoke(app, ["fit", "--data", str(tmp_path), "--loss-option", "smooth=1"])
    assert res.exit_code == 2
    assert "--loss-option smooth is unknown; use one of dice_smooth," in res.stderr
    res = CliRunner().invoke(app, ["fit", "--data", str(tmp_path), "--loss", "dice",
                                   "--loss-option", "dice_smooth=-1"])
    assert res.exit_code == 2 and "--loss-option dice_smooth must be a finite number" in \
        res.stderr
