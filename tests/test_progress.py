"""Progress in logs: a few plain lines with rate and ETA, not thousands of redraws."""

from __future__ import annotations

import re

import pytest

from unetkit.progress import duration, plain_output, progress


def test_plain_progress_prints_about_every_tenth(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("UNETKIT_PROGRESS", "plain")
    assert plain_output()
    assert list(progress(range(25), total=25, desc="Predicting")) == list(range(25))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10 and "\r" not in "".join(lines)
    done = [int(re.match(r"Predicting: (\d+)/25 img", ln).group(1)) for ln in lines]
    assert done == sorted(done) and done[-1] == 25 and done[0] == 3  # 10% of 25, rounded up
    assert all(" img/s, elapsed " in ln and ", ETA " in ln for ln in lines)


def test_bar_on_request_and_nothing_when_disabled(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("UNETKIT_PROGRESS", "bar")
    assert not plain_output()
    monkeypatch.setenv("UNETKIT_PROGRESS", "plain")
    assert list(progress([1, 2], total=2, disable=True)) == [1, 2]
    assert capsys.readouterr().err == ""


def test_duration_reads_well() -> None:
    assert duration(0.44) == "0.4 s"
    assert duration(12.4) == "12 s"
    assert duration(185) == "3 min 05 s"
    assert duration(3720) == "1 h 02 min"


def test_long_tiled_predictions_report_progress(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    import torch

    from unetkit.infer.tiling import PROGRESS_MIN_BATCHES, sliding_window

    monkeypatch.setenv("UNETKIT_PROGRESS", "plain")
    image = torch.rand(1, 96, 96)
    out = sliding_window(lambda b: b * 2, image, (8, 8), overlap=0.25, batch_size=1)
    assert torch.allclose(out, image * 2, atol=1e-5)  # blending a pixelwise map is exact
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("Tiles: ")]
    assert len(lines) == 10 and lines[-1].startswith("Tiles: ")
    total = int(lines[-1].split("/")[1].split()[0])
    assert total >= PROGRESS_MIN_BATCHES and f"{total}/{total} batch" in lines[-1]
    sliding_window(lambda b: b, torch.rand(1, 16, 16), (8, 8), batch_size=4)  # few: quiet
    assert "Tiles" not in capsys.readouterr().err


def test_training_log_lines_for_epochs_and_long_epochs(capsys: pytest.CaptureFixture) -> None:
    """Per epoch one line; inside an epoch longer than long_epoch_s, one about every 10 %."""
    from types import SimpleNamespace

    from unetkit.train.progress_log import PlainProgress

    bar = PlainProgress(long_epoch_s=0.0)  # every epoch counts as long here
    trainer = SimpleNamespace(is_global_zero=True, current_epoch=0, max_epochs=3,
                              sanity_checking=False,
                              num_training_batches=40, callbacks=[],
                              callback_metrics={"train/loss_step": 0.5,
                                                "train/loss_epoch": 0.25, "val/dice": 0.75})
    bar._trainer = trainer
    bar.on_train_start(trainer, None)
    bar.on_train_epoch_start(trainer, None)
    for i in range(40):
        bar.on_train_batch_end(trainer, None, None, None, i)
    bar.on_validation_end(trainer, None)
    bar.on_train_epoch_end(trainer, None)
    lines = capsys.readouterr().err.splitlines()
    inside = [ln for ln in lines if "steps (" in ln]
    assert [ln.split(" steps")[0] for ln in inside] == [f"epoch 1: {k}/40" for k in
                                                        range(4, 40, 4)]
    assert all("loss 0.5000" in ln and "epoch ETA" in ln for ln in inside)
    assert lines[-1].startswith("epoch 1/3, 40 steps in ") and "loss 0.2500" in lines[-1]
    assert "val Dice 0.7500" in lines[-1] and "ETA" in lines[-1]
    # an epoch that validation pacing skipped shows no stale validation score; one that the
    # time limit cut short counts the steps it took, not the loader's length
    trainer.current_epoch = 1
    bar.on_train_epoch_start(trainer, None)
    for i in range(7):
        bar.on_train_batch_end(trainer, None, None, None, i)
    bar.on_train_epoch_end(trainer, None)
    line = capsys.readouterr().err.splitlines()[-1]
    assert line.startswith("epoch 2/3, 7 steps in ") and "loss 0.2500" in line
    assert "val" not in line
    trainer.is_global_zero = False  # other DDP ranks stay silent
    bar.on_train_epoch_end(trainer, None)
    assert capsys.readouterr().err == ""
