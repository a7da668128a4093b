"""Callbacks that write the run directory: artifact, metrics.csv, image grids, atomic ckpts."""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.plugins.io import TorchCheckpointIO

from unetkit.io_utils import atomic_path, atomic_write_text
from unetkit.models.artifact import save_model


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temp file and rename: a kill never leaves a torn file.

    Streams straight into the temp file (no in-memory copy of the checkpoint)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())


class TrainingClock(Timer):
    """Lightning's Timer, able to leave out time spent on work that is not training (`unetkit
    bench race` scoring the weights mid-run): the budget, the LR schedule and the time saved
    in checkpoints all read the clock without it."""

    def __init__(self, duration: timedelta | None) -> None:
        super().__init__(duration, interval="step", verbose=False)
        self.excluded_s = 0.0

    def time_elapsed(self, stage: str = "train") -> float:
        elapsed = super().time_elapsed(stage)
        return elapsed - self.excluded_s if stage == "train" else elapsed

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the training clock while the block runs (a clock already stopped stays as
        it is)."""
        running = self.start_time() is not None and self.end_time() is None
        start = time.monotonic()
        try:
            yield
        finally:
            if running:
                self.excluded_s += time.monotonic() - start


def training_clock(max_time: float | None) -> TrainingClock:
    """The one training clock: it stops a --max-time run, the LR schedule reads it
    (`SegmentationModule.time_used`), and it is saved in and restored from every checkpoint,
    so a resumed run keeps its place in the budget."""
    return TrainingClock(timedelta(seconds=max_time) if max_time else None)


class ArtifactOnBest(L.Callback):
    """Save the model artifact whenever the epoch beats ModelCheckpoint's best so far.

    ModelCheckpoint keeps the one record of "best" (and restores it on resume); Lightning runs
    it after the other callbacks, so here its best is still the previous epochs'.
    """

    def __init__(self, directory: Path, meta: dict[str, Any]) -> None:
        self.directory, self.meta = directory, meta

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        ckpt = trainer.checkpoint_callback
        if trainer.sanity_checking or not trainer.is_global_zero or ckpt is None:
            return
        value = trainer.callback_metrics.get(ckpt.monitor)
        if value is None or math.isnan(float(value)):
            return
        best = ckpt.best_model_score
        if best is None or not math.isfinite(float(best)) or \
                (float(value) > float(best) if ckpt.mode == "max" else float(value) < float(best)):
            meta = {**self.meta, "best_epoch": trainer.current_epoch, ckpt.monitor: float(value)}
            save_model(pl_module.model, self.directory, meta)


class MetricsCsv(L.Callback):
    """One row per epoch in metrics.csv (rewritten atomically, so it is always readable)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        row: dict[str, Any] = {"epoch": trainer.current_epoch, "step": trainer.global_step,
                               "lr": trainer.optimizers[0].param_groups[0]["lr"]}
        for k, v in sorted(trainer.callback_metrics.items()):
            if k.startswith(("train/", "val/")) and not k.endswith("_step"):
                row[k.replace("_epoch", "")] = round(float(v), 6)
        row["elapsed_s"] = round(pl_module.time_used(), 1)
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = state_dict.get("rows", [])


class ImageGridLogger(L.Callback):
    """TensorBoard image grid per epoch: input | truth | prediction for a few val images."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        batch = getattr(pl_module, "first_val_batch", None)
        if trainer.sanity_checking or batch is None or not trainer.is_global_zero:
            return
        experiment = getattr(trainer.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_image"):
            return
        from unetkit.train.plots import grid_tensor

        grid = grid_tensor(*batch, pl_module.num_classes)
        experiment.add_image("val/input_truth_prediction", grid,
                             global_step=trainer.current_epoch)
