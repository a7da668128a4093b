"""Time accounting for a plan: what an epoch, the fixed costs and a whole schedule cost.

Everything here models how `fit` spends a wall-clock budget, from measured step and
evaluation times (see planner.py for the decisions made with it): an epoch is its training
steps (`_samples` patches, drop_last) plus full-size validation plus checkpoint saves; the
fixed costs are planning, fit start-up, the final report and a safety margin.
"""

from __future__ import annotations

import math
from typing import Any

from unetkit.plan.cpu_layout import Layout, val_per_process
from unetkit.plan.probe import Measurements
from unetkit.plan.record import Decision

MIN_STEPS = 40  # fewer than this trains nothing useful
FIT_STARTUP_S = {"cpu": 5.0, "cuda": 15.0}  # imports, Trainer, loaders, first batch
REPORT_FIXED_S = 3.0  # curves, prediction figure, artifact loading
EPOCH_FIXED_S = 0.4  # per epoch: metrics csv, image grid, progress bar, loop
MARGIN = 0.05  # of the budget, kept free
MEMORY_BYTES_PER_FILTER_PIXEL = 240  # training activations + gradients, fp32, depth-4 U-Net


def epoch_cost(speed: Any, m: Measurements, augment: str, dd: dict[str, Decision],
               weight_maps: bool = False) -> dict[str, float]:
    """Seconds per epoch and optimiser steps per epoch for one measured candidate, the way
    `fit` runs an epoch: `_samples` patches (drop_last), then full-size validation."""
    n_val, batch, size = dd["_n_val"].value, dd["batch_size"].value, dd["size"].value
    samples = dd["_samples"].value
    layout = _layout(dd)  # N CPU processes: each steps, loads and validates its share
    step_s = speed.step_s * layout.step_factor
    if list(speed.size) != list(size) or speed.batch != batch:  # measured elsewhere: rescale
        step_s *= (size[0] * size[1] * batch) / (speed.size[0] * speed.size[1] * speed.batch)
    loader = m.loader_s_per_image.get(augment, 0.0) / layout.devices
    if weight_maps:
        loader += m.loader_s_per_image.get("weight_maps", 0.0) / layout.devices
    if m.machine.device == "cuda":  # loader workers overlap data and compute
        loader /= max(1, min(8, m.machine.cores - 1))
    steps = samples // batch if samples > batch else 1
    train_s = steps * (step_s + batch * loader)
    val_s = val_per_process(n_val, layout) * speed.eval_s_per_image * layout.eval_factor * 1.2
    epoch_s = train_s + val_s + 2.5 * speed.checkpoint_s + EPOCH_FIXED_S
    return {"epoch_s": epoch_s, "steps_per_epoch": steps,
            "images_per_s": steps * batch / train_s}


def _layout(dd: dict[str, Decision]) -> Layout:
    """The planner's threads-vs-processes choice (cpu_layout.py); one process if none."""
    chosen = dd.get("_layout")
    return chosen.value if chosen is not None else Layout(1, "")


def fixed_costs(m: Measurements, speed: Any, n_val: int, budget_s: float,
                extra_startup_s: float = 0.0) -> dict[str, float]:
    shown = min(4, max(n_val, 1))
    return {"planning_s": m.prepare_s + m.probe_s,
            "startup_s": FIT_STARTUP_S.get(m.machine.device, 10.0) + extra_startup_s,
            "report_s": REPORT_FIXED_S + (max(n_val, 1) + shown) * speed.eval_s_per_image * 1.3,
            "margin_s": MARGIN * budget_s}


def schedule(speed: Any, m: Measurements, budget_s: float, augment: str,
             dd: dict[str, Decision], weight_maps: bool = False) -> dict[str, Any]:
    n_val = dd["_n_val"].value
    fixed = fixed_costs(m, speed, n_val, budget_s, _layout(dd).startup_s)
    ep = epoch_cost(speed, m, augment, dd, weight_maps)
    train_s = budget_s - sum(fixed.values())
    epochs = max(0, int(train_s // ep["epoch_s"]))
    return {**{k: round(v, 1) for k, v in fixed.items()}, "train_time_s": round(train_s, 1),
            "epoch_s": round(ep["epoch_s"], 2), "steps_per_epoch": ep["steps_per_epoch"],
            "epochs": epochs, "steps": epochs * ep["steps_per_epoch"],
            "train_images_per_s": round(ep["images_per_s"], 3), "val_images": n_val,
            "augment": augment, "model": speed.key}


def needed_budget(speed: Any, m: Measurements, augment: str, dd: dict[str, Decision],
                  weight_maps: bool = False) -> float:
    ep = epoch_cost(speed, m, augment, dd, weight_maps)
    epochs = math.ceil(MIN_STEPS / ep["steps_per_epoch"])
    fixed = fixed_costs(m, speed, dd["_n_val"].value, 0.0, _layout(dd).startup_s)
    return (sum(fixed.values()) + epochs * ep["epoch_s"]) / (1 - MARGIN)


def nice_duration(seconds: float) -> str:
    """Round a needed budget up to a duration people type: 90s, 2m, 5m, 12m, 1h30m."""
    if seconds <= 60:
        return f"{int(math.ceil(seconds / 10) * 10)}s"
    minutes = math.ceil(seconds / 60)
    if minutes <= 10:
        return f"{minutes}m"
    minutes = int(math.ceil(minutes / 5) * 5)
    return f"{minutes}m" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m".replace(
        "h00m", "h")


def memory_ok(speed: Any, m: Measurements, batch: int, size: list[int]) -> bool:
    filters = speed.options.get("filters", 32)
    need = batch * size[0] * size[1] * filters * MEMORY_BYTES_PER_FILTER_PIXEL
    return need <= 0.6 * m.machine.memory_available_gb * 2**30 or m.machine.memory_available_gb == 0
