"""Threads or processes: how a planned CPU fit spreads over the cores, by measured images/s.

The probe times the first candidate on one process (at the faster of 1 and all threads) and
as N DDP processes x `cores // N` threads (probe_processes.py). A layout's training images/s
counts what fit's loop does per step: the step itself plus loading its images in-process
(each of N processes loads only its own `batch // N`, in parallel). N processes are chosen
when they train at least PROCESS_GAIN faster, each gets MIN_BATCH_PER_PROCESS patches or more
of the batch, and the time they save over the budget outweighs their start-up; else one
process. The budget (budget.py) then prices every candidate's steps, validation and start-up
in the chosen layout. A pure function of the measurements, like the rest of the plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from unetkit.plan.probe import Measurements
from unetkit.train.parallel import MIN_BATCH_PER_PROCESS

PROCESS_GAIN = 0.10  # N processes must train this much faster than one to be used
PROBE_MIN_BUDGET_S = 120  # shorter budgets cannot repay probing and starting processes


def processes_to_probe(cores: int, batch: int, budget_s: float) -> tuple[int, str]:
    """How many processes the probe should time (0: none, and why): as many as the cores,
    as long as each gets MIN_BATCH_PER_PROCESS patches of the batch."""
    n = min(cores, batch // MIN_BATCH_PER_PROCESS)
    if cores < 2:
        return 0, "one core"
    if n < 2:
        return 0, (f"a batch of {batch} leaves fewer than {MIN_BATCH_PER_PROCESS} patches "
                   "per process")
    if budget_s < PROBE_MIN_BUDGET_S:
        return 0, (f"a budget under {PROBE_MIN_BUDGET_S}s cannot repay probing and starting "
                   "processes")
    return n, ""


@dataclass
class Layout:
    """The chosen layout and what it does to the measured single-process costs."""

    devices: int  # training processes (fit --devices)
    reason: str
    batch_per_process: int | None = None
    ratio: float | None = None  # images/s of N processes / of one process (measured)
    step_factor: float = 1.0  # a step's time here / the measured one-process step
    eval_factor: float = 1.0  # an image's validation time here / the measured one
    startup_s: float = 0.0  # extra start-up (spawning the processes)


def _one_label(m: Measurements) -> str:
    tried = " and ".join(m.threads_tested)
    return (f"1 process x {m.threads} thread{'s' if m.threads > 1 else ''}"
            + (f" (the faster of {tried} threads)" if len(m.threads_tested) > 1 else ""))


def layout_speed(m: Measurements) -> Any:
    """The speed sample the processes were probed on (its key is recorded; older plans
    probed the first candidate)."""
    key = m.processes_tested.get("key")
    return next((s for s in m.speeds if s.key == key), m.speeds[0])


def images_per_s(m: Measurements, augment: str) -> tuple[float, float | None]:
    """Training images/s of the probed candidate on one process and as N processes (None
    when the processes were not measured), data loading included."""
    loader = m.loader_s_per_image.get(augment, 0.0)
    first = layout_speed(m)
    one = first.batch / (first.step_s + first.batch * loader)
    p = m.processes_tested
    if not p.get("step_s"):
        return one, None
    per = p["batch_per_process"]
    return one, p["processes"] * per / (p["step_s"] + per * loader)


def choose_layout(m: Measurements, batch: int, augment: str, train_s: float) -> Layout:
    """One process or N, for a planned `batch` and about `train_s` seconds of training."""
    p = m.processes_tested
    if not p.get("step_s") or not m.speeds:
        why = p.get("skipped") or (f"the {p['processes']}-process probe failed ({p['error']})"
                                   if p.get("error") else "processes were not probed")
        return Layout(1, f"one process: {why}")
    n = int(p["processes"])
    if batch // n < MIN_BATCH_PER_PROCESS:
        return Layout(1, f"one process: a batch of {batch} leaves fewer than "
                           f"{MIN_BATCH_PER_PROCESS} patches for each of {n} processes "
                           "(BatchNorm statistics)")
    one, many = images_per_s(m, augment)
    assert many is not None
    ratio = many / one
    label = f"{n} processes x {p['threads_each']} thread{'s' if p['threads_each'] > 1 else ''}"
    measured = f"measured {many:.2f} vs {one:.2f} training images/s, data loading included"
    if ratio < 1 + PROCESS_GAIN:
        return Layout(1, f"{_one_label(m)}: {label} trained only {ratio:.2f}x as many "
                           f"images/s ({measured}; {1 + PROCESS_GAIN:.2f}x needed)")
    saved = max(0.0, train_s) * (1 - 1 / ratio)
    if saved <= p["startup_s"]:
        return Layout(1, f"{_one_label(m)}: {label} train {ratio:.1f}x faster "
                           f"({measured}), but would save ~{saved:.0f}s of the training time, "
                           f"less than the {p['startup_s']:.0f}s they take to start")
    first = layout_speed(m)  # the probe's DDP step trained batch_per_process x n of its batch
    step_factor = p["step_s"] / (first.step_s * p["batch_per_process"] * n / first.batch)
    eval_factor = 1.0
    if p["threads_each"] != m.threads and m.threads_tested:  # validation on fewer threads
        times = {int(k): v for k, v in m.threads_tested.items()}
        if p["threads_each"] in times and m.threads in times:
            eval_factor = times[p["threads_each"]] / times[m.threads]
    return Layout(n, f"{label}: {ratio:.1f}x the images/s of {_one_label(m)} ({measured}; "
                  f"DDP over gloo, {batch // n} patches per process, effective batch "
                  f"{batch // n * n})", batch // n, round(ratio, 3), step_factor, eval_factor,
                  float(p["startup_s"]))


def layout_batch(batch: int, layout: Layout) -> int:
    """The batch rounded down to split evenly over the layout's processes."""
    n = layout.devices
    return batch if n <= 1 else max(n * MIN_BATCH_PER_PROCESS, batch // n * n)


def val_per_process(n_val: int, layout: Layout | None) -> int:
    """Validation images each process scores (the validation set is sharded)."""
    return max(1, math.ceil(max(n_val, 1) / (layout.devices if layout else 1)))


__all__ = ["Layout", "PROCESS_GAIN", "choose_layout", "images_per_s", "layout_batch",
           "processes_to_probe", "val_per_process"]
