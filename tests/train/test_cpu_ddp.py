"""`fit --devices N` on CPU: N DDP processes sharing the effective batch, the cores and every
epoch's patches (train/parallel.py)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.trainer.connectors.data_connector import _get_distributed_sampler
from lightning.pytorch.trainer.states import RunningStage
from lightning.pytorch.utilities.data import _is_dataloader_shuffled
from torch.utils.data import Dataset

from unetkit.config import FitConfig
from unetkit.errors import UsageError
from unetkit.train import defaults, parallel
from unetkit.train.loaders import make_loader


class _Items(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, item):  # the (index, augmentation seed) pairs the sampler yields
        return item


def _shards(loader, epoch: int, processes: int) -> list[list[tuple[int, int]]]:
    """The items each process draws in `epoch`, through the sampler Lightning's DDP builds."""
    out = []
    for rank in range(processes):
        sampler = _get_distributed_sampler(loader, _is_dataloader_shuffled(loader), 0,
                                           RunningStage.TRAINING, num_replicas=processes,
                                           rank=rank)
        sampler.set_epoch(epoch)
        out.append(list(sampler))
    return out


def test_each_process_draws_a_disjoint_shard_of_every_epoch():
    processes, n = 2, 5
    length = parallel.epoch_samples(9, processes)  # 9 patches -> 10: an even split
    assert length == 10
    loader = make_loader(_Items(n), 2, True, 0, 7, torch.device("cpu"), length)
    seen = []
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        whole = list(loader.sampler)  # what one process draws this epoch
        shards = _shards(loader, epoch, processes)
        assert [len(s) for s in shards] == [5, 5]
        assert not set(shards[0]) & set(shards[1])  # disjoint: no (image, seed) twice
        assert sorted(shards[0] + shards[1]) == sorted(whole)  # together: the whole epoch
        assert len({i for i, _ in whole}) == n  # every image drawn
        seen.append(shards[0])
    assert seen[0] != seen[1]  # a new order every epoch (set_epoch reaches our sampler)


def test_batch_splits_evenly_or_says_why():
    assert parallel.split_batch(8, 2) == 4 and parallel.split_batch(2, 2) == 1
    assert parallel.split_batch(5, 1) == 5
    with pytest.raises(UsageError, match=r"--batch-size 5 does not split evenly over "
                                         r"--devices 2 CPU processes; use a multiple of 2"):
        parallel.split_batch(5, 2)
    with pytest.raises(UsageError, match="--batch-size 1"):
        parallel.split_batch(1, 2)
    # a batch fit chooses itself: the nearest multiple with two patches per process or more
    assert parallel.fit_batch(5, 2) == 4 and parallel.fit_batch(2, 2) == 4
    assert parallel.fit_batch(7, 3) == 6 and parallel.fit_batch(7, 1) == 7
    assert parallel.threads_per_process(2, cores=2) == 1
    assert parallel.threads_per_process(3, cores=8) == 2
    assert parallel.threads_per_process(4, cores=2) == 1


def test_processes_only_for_cpu_on_one_machine(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert parallel.cpu_processes(2, "cpu") == 2
    assert parallel.cpu_processes(1, "cpu") == 1
    assert parallel.cpu_processes(2, "cuda") == 1  # GPUs keep Lightning's own DDP
    assert parallel.cpu_processes(2, "cpu", num_nodes=2) == 1
    assert parallel.trainer_options(1, "cpu") == {}
    strategy = parallel.trainer_options(2, "cpu")["strategy"]
    assert strategy._start_method == "spawn" and strategy._process_group_backend == "gloo"
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun/SLURM started the processes already
    assert parallel.cpu_processes(2, "cpu") == 1


def test_fit_defaults_split_the_batch(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cpu = torch.device("cpu")
    sizes = [(64, 64)] * 4
    auto = defaults.resolve(FitConfig(devices=2), sizes, 1.0, cpu)
    batch = auto.values["batch_size"]  # 64 px patches: 32 of them, already even
    assert batch == 32 and auto.values["devices"] == 2
    assert "devices = 2: 2 CPU processes (DDP over gloo) x" in "\n".join(auto.reasons)
    assert "16 of the batch of 32 each" in "\n".join(auto.reasons)
    odd = defaults.resolve(FitConfig(devices=2, size=[200, 200]), sizes, 1.0, cpu)
    assert odd.values["batch_size"] == 6  # 4 * 256^2 / 200^2 = 6.5 -> 6, split 3 + 3
    with pytest.raises(UsageError, match="--batch-size 3 does not split evenly"):
        defaults.resolve(FitConfig(devices=2, batch_size=3), sizes, 1.0, cpu)
    with pytest.raises(UsageError, match="--unfreeze-at cannot be combined with --devices 2"):
        defaults.resolve(FitConfig(devices=2, unfreeze_at=3), sizes, 1.0, cpu)
    one = defaults.resolve(FitConfig(devices=1, batch_size=3), sizes, 1.0, cpu)
    assert one.values["batch_size"] == 3 and "devices" not in one.values


_STARTED: list[int] = []


def _note_start() -> None:
    _STARTED.append(1)


def test_spawned_processes_set_up_and_end_with_their_parent(monkeypatch):
    import pickle

    cb = parallel.ProcessThreads(1, _note_start)
    assert cb.parent == os.getpid() and not _STARTED
    child = pickle.loads(pickle.dumps(cb))  # what a spawned process receives
    assert _STARTED == [1] and child.threads == 1  # on_start ran as it arrived
    before = torch.get_num_threads()
    try:
        child.setup(None, None, "fit")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    exits = []
    monkeypatch.setattr(os, "_exit", exits.append)
    child.parent = -1  # as if spawned by a process that is gone (this one was reparented)
    child.on_train_batch_start(None, None, None, 0)
    child.on_validation_batch_start(None, None, None, 0)
    assert exits == [1, 1]
    child.parent = os.getppid()  # its parent alive: carry on
    child.on_train_batch_start(None, None, None, 0)
    assert exits == [1, 1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "UNETKIT_PROGRESS": "plain"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, "-m", "unetkit", *args], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_two_process_fit_writes_one_run_and_resumes(tmp_path: Path):
    """A real 2-process CPU fit from the CLI: one artifact, one metrics.csv, the effective
    batch of 4 (2 per process) and its steps per epoch, validation scored over both
    processes' shards, then --resume continues the same run."""
    from unetkit.data.synthetic import write_folder

    data = write_folder(tmp_path / "data", count=8, size=(32, 64), channels=1, seed=3)
    run = tmp_path / "run"
    first = _cli("fit", "--data", str(data), "--out", str(run), "--devices", "2",
                 "--batch-size", "4", "--size", "32", "--val-split", "0.25", "--epochs", "6",
                 "--option", "filters=4", "--option", "depth=2", "--precision", "32",
                 "--lr", "1e-2", "--ema", "0", "--no-calibrate")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "picked devices = 2: 2 CPU processes (DDP over gloo)" in first.stderr
    assert first.stderr.count("unetkit fit: data") == 1  # set up once, not per process
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["devices"] == 2 and config["batch_size"] == 4
    config["epochs"] = 7  # then resume it for one more epoch
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    again = _cli("fit", "--resume", str(run))
    assert again.returncode == 0, again.stderr[-3000:]

    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    # 6 training images of 32x64 = 12 patches of 32x32 per epoch; an effective batch of 4
    # takes 3 steps per epoch (each process: 6 patches, 2 per step; one process at 2 takes 6)
    assert all(int(r["step"]) == 3 * (int(r["epoch"]) + 1) for r in rows)
    assert {0, 5, 6} <= {int(r["epoch"]) for r in rows}  # each run's first and last epoch
    assert sorted(p.name for p in (run / "model").iterdir()) == [
        "README.md", "config.json", "model.safetensors"]
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2  # one per run
    assert not list(run.rglob("*.tmp"))  # every file landed whole
    # the logged validation score covers both processes' images (torchmetrics syncs the
    # confusion matrix): it is the full-size score of the same weights on all of them. The
    # model is trained (lr 1e-2, no averaging) so few pixels sit near a tie; the tolerance
    # allows a pixel or two to flip between the two batchings' kernels (seen on one CPU
    # with an untrained net), while one shard alone scores far off (per image 0.07 / 0.61).
    summary = json.loads((run / "report" / "summary.json").read_text())
    best = max(rows, key=lambda r: float(r["val/mean_dice"]))
    assert summary["images"] == 2
    assert float(best["val/mean_dice"]) == pytest.approx(summary["mean_dice"], abs=2e-3)
