"""Timing and memory primitives for the benchmarks: interleaved rounds and peak memory.

Other jobs may share the machine, so compared variants run interleaved (A, B, B, A, A, B,
...: the order reverses every round so slow drifts hit both alike) and every figure
from one run is compared only with figures from the same run. Peak memory per segment is
the resident-set high-water mark (Linux VmHWM, reset before each segment through
/proc/self/clear_refs), or torch.cuda.max_memory_allocated on CUDA.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


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
    """Peak memory (MB) while the block runs, and how far above its start it went."""

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
    times: list[float] = field(default_factory=list)
    peak_mb: float = 0.0
    extra_mb: float = 0.0
    error: str | None = None

    @property
    def ips(self) -> float:
        total = sum(self.times)
        return self.images * self.steps_done / total if total > 0 else 0.0

    steps_done: int = 0


def say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def interleave(variants: list[Variant], device: torch.device, rounds: int, steps: int,
               warmup: int, label: str, quiet: bool = False,
               optional: set[str] | None = None) -> list[Variant]:
    """Warm each variant up, then time `steps` calls per variant per round, interleaved.

    A variant named in `optional` that raises is kept with its `error` and left out;
    others propagate their exception.
    """
    optional = optional or set()
    live = []
    for v in variants:
        try:
            if v.setup:
                v.setup()
            for _ in range(warmup):
                v.step()
            synchronize(device)
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
            with PeakMemory(device) as mem:
                synchronize(device)
                t0 = time.perf_counter()
                for _ in range(steps):
                    v.step()
                synchronize(device)
                dt = time.perf_counter() - t0
            v.times.append(dt)
            v.steps_done += steps
            v.peak_mb = max(v.peak_mb, mem.peak_mb)
            v.extra_mb = max(v.extra_mb, mem.extra_mb)
        figures = ", ".join(f"{v.name} {v.images * steps / v.times[-1]:.3g}" for v in live)
        say(f"  [{label}] round {r + 1}/{rounds} (img/s): {figures}", quiet)
    return variants


def round_ratios(a: Variant, b: Variant) -> list[float]:
    """Per-round ips(b) / ips(a): adjacent in time, so less exposed to load changes."""
    return [round(ta / tb, 3) for ta, tb in zip(a.times, b.times, strict=False) if tb > 0]


def sig(x: float, digits: int = 4) -> float:
    """Round to `digits` significant figures (ratios are computed from these values)."""
    if x == 0 or x != x:
        return x
    from math import floor, log10

    return round(x, max(0, digits - 1 - floor(log10(abs(x)))))


def ratio(num: float, den: float) -> float | None:
    return round(num / den, 3) if den else None


def cpu_flags() -> list[str]:
    """The SIMD flags that matter for CPU kernels (avx2, avx512*, amx*, fma)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return sorted(f for f in set(flags) if f.startswith(("avx", "amx", "fma",
                                                                         "f16c", "vnni")))
    except OSError:
        pass
    return []


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
