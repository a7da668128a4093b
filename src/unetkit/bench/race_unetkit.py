"""unetkit in `unetkit bench race`: `fit`'s own path, scored by a Lightning callback.

The callback scores the current weights every `every_s` seconds of unetkit's training clock
(train/callbacks.py `TrainingClock`, the Timer that stops a --max-time run and drives its
learning-rate schedule) with that clock stopped, so scoring costs unetkit neither budget
nor schedule. Everything else is what `unetkit fit --data DIR --max-time BUDGET` does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import yaml

from unetkit.bench.race_score import Scorer
from unetkit.config import FitConfig
from unetkit.fit_flags import fit_options
from unetkit.progress import say
from unetkit.train.callbacks import TrainingClock
from unetkit.train.ema import weight_average
from unetkit.train.fit import fit

SETTINGS = ("model", "model_options", "scale", "size", "batch_size", "precision", "loss",
            "loss_options", "optimizer", "lr", "scheduler", "augment", "rare_crops",
            "max_time", "num_workers", "ema")


class RaceScorer(L.Callback):
    """Score the weights at the start, every `every_s` training seconds, and at the end."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.steps = 0
        self.train_s = 0.0

    @staticmethod
    def _clock(trainer: L.Trainer) -> TrainingClock:
        return next(c for c in trainer.callbacks if isinstance(c, TrainingClock))

    def _score(self, trainer: L.Trainer, pl_module: L.LightningModule, t: float) -> None:
        """Score the weights fit would keep now: the weight average where the run has one."""
        average = weight_average(trainer)
        with average.applied(pl_module.model) if average else contextlib.nullcontext():
            self.scorer.score(t, pl_module, self._clock(trainer), trainer.global_step)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        norm = pl_module.model.unetkit_meta["normalization"]  # what fit normalises with
        self.scorer.mean, self.scorer.std = list(norm["mean"]), list(norm["std"])
        self._score(trainer, pl_module, 0.0)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        t = self._clock(trainer).time_elapsed()
        if not trainer.should_stop and self.scorer.due(t):
            self._score(trainer, pl_module, t)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.steps, self.train_s = trainer.global_step, self._clock(trainer).time_elapsed()
        self._score(trainer, pl_module, self.train_s)


def cli_config(data: Path, budget: str, width: int | None = None) -> FitConfig:
    """The config `unetkit fit --data DATA --max-time BUDGET` builds (the CLI's defaults);
    `width` (tests) sets the U-Net's base filters."""
    config = fit_options(data=str(data), max_time=budget)
    if width:
        config.model_options["filters"] = width
    return config


def planned_config(config: FitConfig, budget_s: float, quiet: bool) -> tuple[FitConfig, float]:
    """What `fit --auto --budget BUDGET` trains with, and the seconds planning took (they
    count in unetkit's time). One process: the race scores inside this one (its threads
    then use every core)."""
    import torch

    from unetkit.plan import make_plan
    from unetkit.train.parallel import usable_cores

    start = time.perf_counter()
    plan = make_plan(config.data, budget_s, config.format, quiet=quiet,
                     **config.format_options)
    planned = plan.to_fit_config(config)
    planned.devices = 1
    # the time limit ends the leg, as it ends the peers' (plans set no epoch cap either;
    # this keeps the race's rule whatever the plan says)
    planned.epochs = None
    planning_s = time.perf_counter() - start
    # fit's plan keeps back start-up, the final evaluation and a margin inside a user's
    # budget; the race scores outside every entrant's clock, so unetkit trains for what
    # planning left of the budget, as the peers train for all of it
    planned.max_time = f"{max(budget_s - planning_s, 1.0):.1f}s"
    torch.set_num_threads(usable_cores())
    return planned, planning_s


def run_unetkit(config: FitConfig, splits: dict[str, list[str]], scorer: Scorer,
                run_dir: Path) -> dict[str, Any]:
    """`fit` on the race's splits into `run_dir`, scored by `scorer`; return steps and the
    settings fit resolved (quiet: the race prints its own progress)."""
    config = dataclasses.replace(config, out=str(run_dir))
    callback = RaceScorer(scorer)
    with contextlib.redirect_stdout(sys.stderr):
        fit(config, quiet=True, splits=splits, callbacks=[callback])
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    settings = {k: resolved.get(k) for k in SETTINGS}
    say("  unetkit resolved " + ", ".join(f"{k} {v}" for k, v in settings.items()),
        scorer.quiet)
    return {"steps": callback.steps, "train_s": round(callback.train_s, 2),
            "settings": settings}
