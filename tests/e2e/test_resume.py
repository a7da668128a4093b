"""Kill a training run with SIGKILL mid-way, resume it, and get the uninterrupted result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from unetkit.data.synthetic import write_folder

ARGS = ["--epochs", "4", "--size", "48", "--option", "filters=4", "--option", "depth=2",
        "--batch-size", "2", "--seed", "3"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "unetkit.cli", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return ckpt["state_dict"], ckpt["epoch"]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    data = write_folder(tmp_path / "data", count=10, size=(96, 96), channels=1, seed=5)
    full, cut = tmp_path / "full", tmp_path / "cut"
    subprocess.run(_cli("fit", "--data", str(data), "--out", str(full), *ARGS), check=True,
                   env=_env(), capture_output=True)

    proc = subprocess.Popen(_cli("fit", "--data", str(data), "--out", str(cut), *ARGS),
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = cut / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    _, killed_epoch = _weights(cut)
    assert killed_epoch < 3
    assert not list((cut / "checkpoints").glob("*.tmp"))  # no torn files left behind

    subprocess.run(_cli("fit", "--resume", str(cut)), check=True, env=_env(),
                   capture_output=True)
    expected, epoch_full = _weights(full)
    got, epoch_cut = _weights(cut)
    assert epoch_cut == epoch_full
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
