"""`fit --init-from RUN`: a new run that starts from another run's weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.config import FitConfig
from unetkit.data.synthetic import write_folder
from unetkit.errors import UsageError
from unetkit.models.artifact import load_model
from unetkit.train import fit as fit_module
from unetkit.train.fit import fit
from unetkit.train.init_from import with_source_settings


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data, run): a 1-epoch fit of a tiny U-Net on 8 binary 32 px images."""
    root = tmp_path_factory.mktemp("init")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNETKIT_CACHE", str(root / "cache"))
        data = write_folder(root / "data", count=8, size=(32, 32), channels=1, seed=3)
        for mask in (data / "masks").iterdir():  # binary: ellipses/polygons/curves -> 1
            Image.fromarray((np.asarray(Image.open(mask)) > 0).astype(np.uint8) * 255).save(mask)
        (data / "classes.txt").unlink()
        config = FitConfig(data=str(data), epochs=1, size=[32, 32], batch_size=4, scale=0.75,
                           model_options={"filters": 4, "depth": 2}, out=str(root / "run"))
        fit(config, quiet=True)
    return data, root / "run"


@pytest.mark.slow
def test_weights_before_the_first_step_are_the_sources(source, tmp_path, monkeypatch):
    data, run = source
    seen: dict[str, torch.Tensor] = {}

    class Capturing(fit_module.SegmentationModule):
        def on_fit_start(self) -> None:
            seen.update({k: v.detach().clone() for k, v in self.model.state_dict().items()})

    monkeypatch.setattr(fit_module, "SegmentationModule", Capturing)
    out = tmp_path / "tuned"
    result = CliRunner().invoke(app, ["fit", "--data", str(data), "--epochs", "1",
                                      "--init-from", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    expected = load_model(run).state_dict()
    assert seen and set(seen) == set(expected)
    assert all(torch.equal(seen[k], expected[k]) for k in expected)
    tuned = FitConfig.load(out / "config.yaml")  # the source's settings, recorded
    assert tuned.init_from == str(run) and tuned.size == [32, 32] and tuned.scale == 0.75
    assert tuned.model_options["filters"] == 4 and tuned.model_options["depth"] == 2
    meta = load_model(out).unetkit_meta
    assert meta["normalization"] == load_model(run).unetkit_meta["normalization"]


def test_a_different_model_or_encoder_is_one_sentence(source):
    _, run = source
    src = fit_module.init_source(str(run))
    with pytest.raises(UsageError, match=r"holds a unet model but --model is unet-bn; "
                                         r"fine-tuning needs the same architecture"):
        with_source_settings(FitConfig(model="unet-bn", init_from=str(run)), src)
    with pytest.raises(UsageError, match="has the None encoder but --encoder is resnet18"):
        with_source_settings(FitConfig(model_options={"encoder": "resnet18"},
                                       init_from=str(run)), src)
    kept = with_source_settings(FitConfig(size=[16, 16], init_from=str(run)), src)
    assert kept.size == [16, 16] and kept.scale == 0.75  # given settings win


def test_class_count_must_match(source, tmp_path):
    _, run = source
    data = write_folder(tmp_path / "four", count=4, size=(32, 32), channels=1, seed=1)
    config = FitConfig(data=str(data), epochs=1, init_from=str(run), out=str(tmp_path / "o"))
    with pytest.raises(UsageError) as exc:
        fit(config, quiet=True)
    assert str(exc.value) == (f"--init-from {run} predicts 1 (binary) output channel(s) "
                              f"(background, foreground) but the data at {data} needs 4; "
                              f"fine-tuning needs the same classes.")


def test_missing_source_names_the_flag(tmp_path):
    result = CliRunner().invoke(app, ["fit", "--data", str(tmp_path), "--init-from",
                                      str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert f"--init-from {tmp_path / 'nope'}: Model path" in result.output
