"""Training progress as plain log lines (when stderr is not a terminal).

One line per epoch with loss, validation score, rate, elapsed time and ETA, and about every
10% of an epoch that takes longer than LONG_EPOCH_S, instead of a bar redrawn per step.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, Timer

from unetkit.progress import duration

LONG_EPOCH_S = 30.0


class PlainProgress(ProgressBar):
    def __init__(self, long_epoch_s: float = LONG_EPOCH_S) -> None:
        super().__init__()
        self.long_epoch_s = long_epoch_s
        self._on = True
        self._fit_start = self._epoch_start = time.monotonic()
        self._mark = 1
        self._epochs = 0
        self._validated = False
        self._done = 0  # batches this epoch (fewer than the loader's when a time limit stops it)

    def disable(self) -> None:
        self._on = False

    def enable(self) -> None:
        self._on = True

    def _say(self, trainer: L.Trainer, text: str) -> None:
        if self._on and trainer.is_global_zero:
            print(text, file=sys.stderr, flush=True)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_start = time.monotonic()
        self._epochs = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.monotonic()
        self._mark = 1
        self._validated = False
        self._done = 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # validation is paced (train/val_pacing.py): only a validated epoch has fresh scores
        self._validated = self._validated or not trainer.sanity_checking

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self._done = batch_idx + 1
        total = self.total_train_batches
        if not isinstance(total, int) or total <= 0:
            return
        done = batch_idx + 1
        elapsed = time.monotonic() - self._epoch_start
        if done * 10 < self._mark * total or done >= total:
            return
        self._mark = done * 10 // total + 1
        if elapsed * total / done < self.long_epoch_s:
            return
        rate = done / elapsed if elapsed > 0 else 0.0
        loss = trainer.callback_metrics.get("train/loss_step")
        self._say(trainer, f"epoch {trainer.current_epoch + 1}: {done}/{total} steps "
                           f"({100 * done // total}%), {rate:.3g} steps/s"
                  + (f", loss {float(loss):.4f}" if loss is not None else "")
                  + f", epoch ETA {duration((total - done) / rate if rate else 0)}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        now = time.monotonic()
        self._epochs += 1
        epoch = trainer.current_epoch + 1
        steps = self._done
        took = now - self._epoch_start
        m = trainer.callback_metrics
        parts = [f"epoch {epoch}" + (f"/{trainer.max_epochs}" if trainer.max_epochs
                                      and trainer.max_epochs > 0 else "")]
        if steps and took > 0:
            parts.append(f"{steps} steps in {duration(took)} ({steps / took:.3g} steps/s)")
        for key, label in (("train/loss_epoch", "loss"), ("val/loss", "val loss"),
                           ("val/dice", "val Dice"), ("val/mean_dice", "val mean Dice")):
            fresh = self._validated or not key.startswith("val/")
            if fresh and key in m and not (key == "val/mean_dice" and "val/dice" in m):
                parts.append(f"{label} {float(m[key]):.4f}")
        eta = self._eta(trainer, now, epoch)
        parts.append(f"elapsed {duration(now - self._fit_start)}"
                     + (f", ETA {duration(eta)}" if eta is not None else ""))
        self._say(trainer, ", ".join(parts))

    def _eta(self, trainer: L.Trainer, now: float, epoch: int) -> float | None:
        left = []
        if trainer.max_epochs and trainer.max_epochs > 0:  # epochs of this process only
            per_epoch = (now - self._fit_start) / max(self._epochs, 1)
            left.append(per_epoch * (trainer.max_epochs - epoch))
        for c in trainer.callbacks:
            if isinstance(c, Timer) and c.time_remaining() is not None:
                left.append(max(0.0, float(c.time_remaining())))
        return min(left) if left and all(math.isfinite(v) for v in left) else None
