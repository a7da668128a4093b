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
