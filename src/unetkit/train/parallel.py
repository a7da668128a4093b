"""Data-parallel training on CPU: N processes, each on its share of the cores.

Small U-Nets stop getting faster with more intra-op threads well before the cores run out
(the planner's probe measures it), so `fit --devices N` on CPU runs Lightning DDP over N
processes instead: gloo all-reduces the gradients, each process trains on `cores // N`
threads and on its own disjoint shard of every epoch's patches. `--batch-size` stays the
effective batch (what the gradient averages over, so the learning rate and the steps per
epoch a plan budgeted for hold): each process takes `batch // N` of it.

The processes are spawned by Lightning (`ddp_spawn`): data, splits, the LR range test and the
config are prepared once in the calling process, so a run started from the CLI, a plan or the
Python API trains the same way, and only the training loop runs N times. BatchNorm is not
synchronised (torch's SyncBatchNorm runs on GPUs only): each process normalises over its own
`batch // N` patches, so an automatic batch (here and in the planner) keeps that at
MIN_BATCH_PER_PROCESS or more; a batch the user gave only has to split evenly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from unetkit.errors import UsageError

BACKEND = "gloo"
MIN_BATCH_PER_PROCESS = 2  # BatchNorm statistics from fewer patches than this get noisy


def usable_core_ids() -> list[int]:
    """The CPU cores this process may run on (its affinity mask, e.g. a container's quota),
    sorted; all of them where the platform has no affinity (not Linux)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))


def usable_cores() -> int:
    """How many CPU cores this process may run on."""
    return len(usable_core_ids())


def cpu_processes(devices: int, device_type: str, num_nodes: int = 1) -> int:
    """How many training processes this machine's CPU runs (1: no CPU data parallelism).

    Launchers that start the processes themselves (torchrun, SLURM: WORLD_SIZE is set) and
    multi-node runs keep Lightning's own DDP; this is for N processes on one machine."""
    if device_type != "cpu" or devices <= 1 or num_nodes > 1 or "WORLD_SIZE" in os.environ:
        return 1
    return devices


def threads_per_process(processes: int, cores: int | None = None) -> int:
    """Each process's share of the cores (at least one thread)."""
    return max(1, (cores or usable_cores()) // max(1, processes))


def split_batch(batch: int, processes: int) -> int:
    """Each process's part of the effective batch; a batch that does not split evenly over
    the processes (or leaves one empty) is refused, naming the flags."""
    if processes <= 1:
        return batch
    if batch < processes or batch % processes:
        raise UsageError(f"--batch-size {batch} does not split evenly over --devices "
                         f"{processes} CPU processes; use a multiple of {processes}, e.g. "
                         f"{max(processes, round(batch / processes) * processes)}.")
    return batch // processes


def fit_batch(batch: int, processes: int) -> int:
    """An automatically chosen batch rounded to the nearest multiple of `processes` that
    gives each process MIN_BATCH_PER_PROCESS patches or more."""
    if processes <= 1:
        return batch
    return max(processes * MIN_BATCH_PER_PROCESS, round(batch / processes) * processes)


def epoch_samples(samples: int, processes: int) -> int:
    """An epoch's patches rounded up to a multiple of the process count, so every process gets
    an equal, disjoint shard (no patch repeated to pad one)."""
    return -(-samples // processes) * processes


class ProcessThreads(L.Callback):
    """In each spawned training process: set its intra-op threads (it starts with torch's
    default, every core, which N processes would oversubscribe), run `on_start` (fit's log
    quieting: a spawned process keeps none of its parent's settings), and end it when the
    `fit` that started it is gone (killed: no orphan trains on into its run directory)."""

    def __init__(self, threads: int, on_start: Callable[[], None] | None = None) -> None:
        self.threads, self.on_start = threads, on_start
        self.parent = os.getpid()  # pickled with it: the spawned processes' parent

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)  # unpickled first thing in a spawned process
        if self.on_start is not None:
            self.on_start()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        torch.set_num_threads(self.threads)

    def _check_parent(self) -> None:
        if os.getpid() != self.parent and os.getppid() != self.parent:
            os._exit(1)  # the parent was killed; exit without waiting on the others

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        self._check_parent()

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                  batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._check_parent()


def trainer_options(devices: int, device_type: str, num_nodes: int = 1) -> dict[str, Any]:
    """The Trainer arguments that make `devices` CPU processes (empty otherwise): Lightning's
    `ddp_spawn` over gloo."""
    processes = cpu_processes(devices, device_type, num_nodes)
    if processes <= 1:
        return {}
    from lightning.pytorch.strategies import DDPStrategy

    return {"strategy": DDPStrategy(start_method="spawn", process_group_backend=BACKEND)}


def check_cpu_parallel(devices: int, device_type: str, unfreeze_at: int | None,
                       num_nodes: int = 1) -> int:
    """The process count, after refusing what DDP cannot do: an encoder unfrozen mid-run
    (DDP fixes the trained parameters when it starts)."""
    processes = cpu_processes(devices, device_type, num_nodes)
    if processes > 1 and unfreeze_at is not None:
        raise UsageError(f"--unfreeze-at cannot be combined with --devices {devices}: DDP "
                         "synchronises only the parameters trainable when training starts; "
                         "train on one process or drop --unfreeze-at.")
    return processes


__all__ = ["ProcessThreads", "check_cpu_parallel", "cpu_processes", "epoch_samples",
           "fit_batch", "split_batch", "threads_per_process", "trainer_options",
           "usable_cores"]
