"""Validate as often as a fixed share of the training time allows, and always at the end.

Short epochs (small data, large crops) made the per-epoch validation pass, its image grid
and its checkpoints a large slice of a time-limited run (docs/decisions.md, "Validation is
paced"); those seconds are steps the model never takes. This callback skips whole epochs'
validation until the training time since the last pass pays for the next one at `share`,
and validates the epoch in which training stops, so the last weights are always scored and
can become the best checkpoint.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning as L

NEVER = sys.maxsize  # check_val_every_n_epoch that no epoch number reaches


class ValidationPacing(L.Callback):
    """Keep validation (with what runs on it) near `share` of training wall time.

    Lightning validates an epoch when `(epoch + 1) % trainer.check_val_every_n_epoch == 0`;
    this sets that number to 1 for an epoch that is due and to NEVER for one that is not.
    Rank 0 decides and the decision is broadcast, so every DDP process validates together.
    """

    def __init__(self, share: float = 0.05) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], not {share}")
        self.share = share
        self.val_s: float | None = None  # seconds the last validation round cost
        self.trained_s = 0.0  # training seconds since that round
        self.epoch_s = 0.0  # training seconds of the last epoch (what this one will add)
        self._epoch_start = self._val_start = 0.0
        self._validated = self._pending = False

    def due(self) -> bool:
        """Whether validation at the end of this epoch is paid for, counting the training
        this epoch is about to do (the first round always is)."""
        return self.val_s is None or (self.trained_s + self.epoch_s) * self.share >= self.val_s

    def _set(self, trainer: L.Trainer, validate: bool) -> None:
        trainer.check_val_every_n_epoch = 1 if validate else NEVER

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.monotonic()
        if self._pending:  # the round ran from validation start to here: the checkpoints
            # and the model artifact written after it are paced with it
            self.val_s, self._pending = self._epoch_start - self._val_start, False
        self._validated = False
        cap = trainer.max_epochs or -1  # -1: no epoch cap (a --max-time run)
        last = 0 < cap <= trainer.current_epoch + 1
        self._set(trainer, bool(trainer.strategy.broadcast(self.due() or last, src=0)))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        # the time limit (TrainingClock) sets should_stop on every rank alike; Lightning then
        # validates this epoch only if the number lets it through
        if trainer.should_stop:
            self._set(trainer, True)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val_start = time.monotonic()
            self.epoch_s = self._val_start - self._epoch_start
            self.trained_s += self.epoch_s
            self._validated = True

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.trained_s, self._pending = 0.0, True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning validates from the epoch's last batch, before this hook
        if not self._validated:
            self.epoch_s = time.monotonic() - self._epoch_start
            self.trained_s += self.epoch_s
