"""The process probe: how fast N processes x one thread each train, measured with real DDP.

When intra-op threads stop scaling, `fit --devices N` on CPU keeps the other cores busy with
DDP (train/parallel.py). Whether that beats one process is measured, not guessed: N processes
are spawned as Lightning spawns fit's, each with `cores // N` threads, each wraps the probe's
first candidate (`CandidateTrainer`, built the way fit trains it) in DistributedDataParallel
over gloo, and they time a warm-up and then TIMED steps on their own `batch // N` share of the
very batches the thread test used. Real DDP rather than N independent single-thread timings,
because the all-reduce of the gradients, the buffer broadcast and the processes' contention
for memory bandwidth are part of every step fit will take. The spawn-to-ready time (imports,
process group) is recorded too: fit pays it once per run.

It takes about 10-20 s (most of it the processes' start-up) and is cut off at TIMEOUT_S; a
failure or timeout is recorded as the reason, and the planner then stays on one process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unetkit.io_utils import atomic_write_text
from unetkit.progress import say
from unetkit.train.parallel import BACKEND, MIN_BATCH_PER_PROCESS, threads_per_process

TIMEOUT_S = 60.0  # the whole probe, start-up included, on a busy machine
Batches = list[tuple[torch.Tensor, torch.Tensor]]


class SharedStep(nn.Module):
    """The module's loss step as a forward pass, so DistributedDataParallel can wrap it."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, batch: tuple[torch.Tensor, ...]) -> Any:
        return self.module.shared_step(batch)


def shard_batches(batches: Batches, processes: int) -> list[Batches] | None:
    """Each process's `batch // processes` slice of every batch (None: too small a batch)."""
    per = len(batches[0][0]) // processes
    if per < MIN_BATCH_PER_PROCESS:
        return None
    return [[(x[r * per:(r + 1) * per], y[r * per:(r + 1) * per]) for x, y in batches]
            for r in range(processes)]


def _worker(rank: int, processes: int, port: int, make_trainer: Callable[[], Any],
            parts: list[Batches], threads: int, launched: float, result: str) -> None:
    """One DDP process: join the group, wrap the trainer's module, time its steps."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(threads)
    dist.init_process_group(BACKEND, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=processes, timeout=timedelta(seconds=TIMEOUT_S))
    try:
        dist.barrier()
        ready = time.time()
        trainer = make_trainer()
        ddp = DistributedDataParallel(SharedStep(trainer.module))
        mine = parts[rank]
        trainer.step(mine[0], ddp)  # warm-up: allocations, gloo buffers
        dist.barrier()
        start = time.perf_counter()
        for batch in mine[1:]:
            trainer.step(batch, ddp)
        dist.barrier()
        step_s = (time.perf_counter() - start) / max(1, len(mine) - 1)
        if rank == 0:
            atomic_write_text(result, json.dumps({"step_s": step_s,
                                                  "startup_s": ready - launched}))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(make_trainer: Callable[[], Any], parts: list[Batches], processes: int,
         threads: int, timeout_s: float, result: Path) -> str | None:
    """Spawn the workers and wait; None when they finished, else why not (one line)."""
    import torch.multiprocessing as mp

    deadline = time.monotonic() + timeout_s
    context = None
    try:
        context = mp.start_processes(
            _worker, args=(processes, _free_port(), make_trainer, parts, threads, time.time(),
                           str(result)), nprocs=processes, join=False, start_method="spawn")
        while not context.join(timeout=0.5):
            if time.monotonic() > deadline:
                return f"timed out after {timeout_s:.0f}s"
    except Exception as exc:  # noqa: BLE001 — any failure just means: stay on one process
        lines = str(exc).strip().splitlines() or [""]
        return f"{type(exc).__name__}: {lines[-1][:200]}"
    finally:
        for p in context.processes if context is not None else []:
            if p.is_alive():
                p.kill()
    return None


def probe_processes(make_trainer: Callable[[], Any], batches: Batches, processes: int,
                    cores: int | None = None, timeout_s: float = TIMEOUT_S,
                    quiet: bool = False) -> dict[str, Any]:
    """Time `make_trainer()`'s step as `processes` DDP processes on `batches` (as many as the
    thread test timed, the first for warm-up); the result for `Measurements.processes_tested`.

    `make_trainer` must be picklable (a module-level class or a functools.partial of one) and
    build an object with `.module` (a SegmentationModule) and `.step(batch, shared_step)`.
    """
    import tempfile

    threads = threads_per_process(processes, cores)
    out: dict[str, Any] = {"processes": processes, "threads_each": threads}
    parts = shard_batches(batches, processes)
    if parts is None:
        return {**out, "skipped": f"a batch of {len(batches[0][0])} gives fewer than "
                f"{MIN_BATCH_PER_PROCESS} patches per process"}
    out["batch_per_process"] = len(parts[0][0][0])
    say(f"  probing {processes} processes x {threads} thread(s), {out['batch_per_process']} "
        "patches each (DDP) ...", quiet)
    with tempfile.TemporaryDirectory(prefix="unetkit-probe-") as tmp:
        result = Path(tmp) / "result.json"
        error = _run(make_trainer, parts, processes, threads, timeout_s, result)
        if error is None and not result.is_file():
            error = "the first process wrote no result"
        if error is not None:
            say(f"    not measured: {error}", quiet)
            return {**out, "error": error}
        timed = json.loads(result.read_text())
    out["step_s"] = round(timed["step_s"], 4)
    out["startup_s"] = round(timed["startup_s"], 2)
    out["train_images_per_s"] = round(processes * out["batch_per_process"] / timed["step_s"], 3)
    say(f"    {out['train_images_per_s']:.2f} training images/s", quiet)
    return out


__all__ = ["SharedStep", "probe_processes", "shard_batches", "TIMEOUT_S"]
