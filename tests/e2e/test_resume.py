"""Kill a training run with SIGKILL mid-way, resume it, and get the uninterrupted result."""

from __future__ import annotations

import json
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


def _weights(run: Path) -> tuple[dict[str, torch.Tensor], int]:
    """The trained weights and the weight average (train/ema.py) of last.ckpt, its epoch."""
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    average = ckpt["callbacks"]["WeightAverage"]["average"]
    assert average, "the checkpoint lacks the weight average"
    return {**ckpt["state_dict"], **{f"average/{k}": v for k, v in average.items()}}, \
        ckpt["epoch"]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    data = write_folder(tmp_path / "data", count=10, size=(96, 96), channels=1, seed=5)
    full, cut = tmp_path / "full", tmp_path / "cut"
    log = subprocess.run(_cli("fit", "--data", str(data), "--out", str(full), *ARGS),
                         check=True, env=_env(), capture_output=True, text=True).stderr
    # stderr is a pipe here: one plain line per epoch with rate and ETA, no redrawn bar
    epochs = [ln for ln in log.splitlines() if ln.startswith("epoch ")]
    assert [ln.split(",")[0] for ln in epochs] == [f"epoch {k}/4" for k in range(1, 5)]
    assert all("steps/s" in ln and "ETA" in ln for ln in epochs) and "\r" not in log

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
    _, killed_epoch = _weights(cut)  # last.ckpt is whole even if the kill hit a write
    assert killed_epoch < 3

    subprocess.run(_cli("fit", "--resume", str(cut)), check=True, env=_env(),
                   capture_output=True)
    assert not list(cut.rglob("*.tmp"))  # temp files of the killed write are cleared
    expected, epoch_full = _weights(full)
    got, epoch_cut = _weights(cut)
    assert epoch_cut == epoch_full
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def _ensemble(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run / "model" / "model.safetensors")


def _kill_when(proc: subprocess.Popen, path: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run finished before {path} appeared"


@pytest.mark.slow
def test_folds_killed_in_fold_2_resume_to_the_same_ensemble(tmp_path: Path) -> None:
    data = write_folder(tmp_path / "data", count=9, size=(48, 48), channels=1, seed=2)
    args = ["--data", str(data), "--folds", "3", "--epochs", "3", "--size", "32", "--option",
            "filters=4", "--option", "depth=2", "--batch-size", "2", "--seed", "1"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    subprocess.run(_cli("fit", *args, "--out", str(full)), check=True, env=_env(),
                   capture_output=True)

    proc = subprocess.Popen(_cli("fit", *args, "--out", str(cut)), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(proc, cut / "fold_1" / "checkpoints" / "last.ckpt")  # fold 2 of 3, mid-way
    assert (cut / "fold_0" / "report" / "summary.json").is_file()
    assert not (cut / "fold_2").exists() and not (cut / "model").exists()
    fold0 = (cut / "fold_0" / "model" / "model.safetensors").stat().st_mtime_ns

    res = subprocess.run(_cli("fit", "--resume", str(cut)), env=_env(), capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    assert "fold 1/3: finished earlier, kept" in res.stderr
    assert (cut / "fold_0" / "model" / "model.safetensors").stat().st_mtime_ns == fold0
    assert not (cut / "checkpoints").exists()  # nothing trained into the parent folder
    expected, got = _ensemble(full), _ensemble(cut)
    assert expected.keys() == got.keys() and len(expected) > 0
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    summary = json.loads((cut / "report" / "summary.json").read_text())
    assert len(summary["folds"]) == 3


@pytest.mark.slow
def test_second_fit_on_the_same_out_refuses_naming_the_lock(tmp_path: Path) -> None:
    data = write_folder(tmp_path / "data", count=6, size=(48, 48), channels=1, seed=2)
    run = tmp_path / "run"
    args = ["fit", "--data", str(data), "--max-time", "3m", "--size", "32", "--option",
            "filters=4", "--option", "depth=2", "--out", str(run)]
    first = subprocess.Popen(_cli(*args), env=_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = subprocess.run(_cli(*args), env=_env(), capture_output=True, text=True)
        assert second.returncode == 1
        lines = [ln for ln in second.stderr.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and str(run) in lines[0] and ".unetkit.lock" in lines[0]
        assert f"process {first.pid}" in lines[0]
    finally:
        first.kill()
        first.wait()
