"""Timing and memory primitives for the benchmarks: interleaved rounds and peak memory.

Other jobs may share the machine, so compared variants run interleaved (A, B, B, A, A, B,
...: the order reverses every round so slow drifts hit both alike) and every figure
from one run is compared only with figures from the same run. Peak memory per segment is
the resident-set high-water mark (Linux VmHWM, reset before each segment through
/proc/self/clear_refs), or torch.cuda.max_memory_allocated on CUDA.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from unetkit.device import cpu_flags, cpu_model  # noqa: F401  (re-exported for the bench)
from unetkit.progress import say  # noqa: F401  (re-exported for the bench)


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_method(device: torch.device) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated"
    if _status_kb("VmHWM") is not None and _reset_hwm():
        return "VmHWM (reset per segment)"
    return "ru_maxrss (process high-water mark, not reset)"


class PeakMemory:
    """Peak memory (MB) while the block runs, and how far above its start it went.

    On CPU that is resident memory: the whole process's high-water mark (`peak_mb`) and
    what the block added above the resident size it started at (`extra_mb`: activations,
    gradients, workspaces). Allocators that keep their own arenas (onnxruntime) hold that
    memory between runs, so it counts as already resident.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mb = 0.0
        self.extra_mb = 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            self.resettable = _reset_hwm()
            self.start = (_status_kb("VmRSS") or 0) / 1024
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            hwm = _status_kb("VmHWM") if self.resettable else None
            if hwm is None:  # kilobytes on Linux
                hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.peak_mb = hwm / 1024
        self.extra_mb = max(0.0, self.peak_mb - self.start)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Variant:
    """One compared thing: `step()` processes `images` images (a train step or a batch)."""

    name: str
    step: Callable[[], Any]
    images: int
    setup: Callable[[], Any] | None = None  # untimed, before each of its segments
    steps: int = 1  # calls per timed segment (set from the warm-up time)
    times: list[float] = field(default_factory=list)  # seconds per segment
    round_ips: list[float] = field(default_factory=list)
    steps_done: int = 0
    warmup_s: float = 0.0  # the first call: includes compilation and first-use costs
    peak_mb: float = 0.0
    extra_mb: float = 0.0
    error: str | None = None

    @property
    def ips(self) -> float:
        total = sum(self.times)
        return self.images * self.steps_done / total if total > 0 else 0.0


def _timed(v: Variant, device: torch.device) -> float:
    synchronize(device)
    t0 = time.perf_counter()
    v.step()
    synchronize(device)
    return time.perf_counter() - t0


def interleave(variants: list[Variant], device: torch.device, rounds: int, label: str,
               quiet: bool = False, optional: set[str] | None = None,
               target_s: float = 0.0, max_steps: int = 20) -> list[Variant]:
    """Warm each variant up, then time each once per round, interleaved (A B, B A, A B...).

    A segment repeats the step enough times to last about `target_s` seconds (estimated
    from the warm-up). A variant named in `optional` that raises is kept with its `error`
    and left out of the rounds; any other exception propagates.
    """
    optional = optional or set()
    live = []
    for v in variants:
        try:
            if v.setup:
                v.setup()
            v.warmup_s = _timed(v, device)
            est = v.warmup_s
            if target_s > 0 and est < target_s:  # the first call may carry one-time costs
                est = _timed(v, device)
            v.steps = max(1, min(max_steps, math.ceil(target_s / est))) if target_s > 0 \
                and est > 0 else 1
            live.append(v)
        except Exception as exc:  # noqa: BLE001 — a lever that cannot run is reported
            if v.name not in optional:
                raise
            v.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
            say(f"  [{label}] {v.name} failed: {v.error}", quiet)
    for r in range(rounds):
        order = live if r % 2 == 0 else live[::-1]
        for v in order:
            if v.setup:
                v.setup()
            synchronize(device)
            t0 = time.perf_counter()
            for _ in range(v.steps):
                v.step()
            synchronize(device)
            dt = time.perf_counter() - t0
            v.times.append(dt)
            v.round_ips.append(v.images * v.steps / dt)
            v.steps_done += v.steps
        figures = ", ".join(f"{v.name} {v.round_ips[-1]:.3g}" for v in live)
        say(f"  [{label}] round {r + 1}/{rounds} (img/s): {figures}", quiet)
    for v in live:  # memory in its own untimed step, from a trimmed heap
        if v.setup:
            v.setup()
        release_memory()
        with PeakMemory(device) as mem:
            v.step()
        v.peak_mb, v.extra_mb = mem.peak_mb, mem.extra_mb
    return variants


def release_memory() -> None:
    """Give freed heap memory back to the OS, so resident size tracks live memory."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def round_ratios(a: Variant, b: Variant) -> list[float]:
    """Per-round ips(b) / ips(a): adjacent in time, so less exposed to load changes."""
    return [round(ib / ia, 3) for ia, ib in zip(a.round_ips, b.round_ips, strict=False) if ia]


def sig(x: float, digits: int = 4) -> float:
    """Round to `digits` significant figures (ratios are computed from these values)."""
    if x == 0 or x != x:
        return x
    from math import floor, log10

    return round(x, max(0, digits - 1 - floor(log10(abs(x)))))


def ratio(num: float, den: float) -> float | None:
    return round(num / den, 3) if den else None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
