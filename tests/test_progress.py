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
