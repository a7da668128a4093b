"""Validation pacing: slow validation is skipped until training time pays for it, and the
epoch in which training stops is always validated."""

from __future__ import annotations

import time
from datetime import timedelta

import lightning as L
import pytest
import torch

from unetkit.train.callbacks import TrainingClock
from unetkit.train.val_pacing import ValidationPacing


class Sleepy(L.LightningModule):
    """Each training batch takes `train_s`, each validation round `val_s` (one batch)."""

    def __init__(self, train_s: float, val_s: float) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.train_s, self.val_s = train_s, val_s

    def training_step(self, batch: tuple[torch.Tensor], batch_idx: int) -> torch.Tensor:
        time.sleep(self.train_s)
        return self.layer(batch[0]).sum()

    def validation_step(self, batch: tuple[torch.Tensor], batch_idx: int) -> None:
        time.sleep(self.val_s)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


class Validated(L.Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.ran: list[int] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.ran.append(trainer.current_epoch)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs.append(trainer.current_epoch)


def _run(share: float, val_s: float, epochs: int = 6, stop_after_s: float | None = None
         ) -> tuple[list[int], list[int]]:
    data = torch.utils.data.TensorDataset(torch.zeros(10, 2))
    loader = torch.utils.data.DataLoader(data, batch_size=1)
    seen = Validated()
    callbacks: list[L.Callback] = [ValidationPacing(share), seen]
    if stop_after_s:
        callbacks.insert(0, TrainingClock(timedelta(seconds=stop_after_s)))
    trainer = L.Trainer(max_epochs=epochs, callbacks=callbacks, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        accelerator="cpu", devices=1)
    trainer.fit(Sleepy(0.03, val_s), loader, torch.utils.data.DataLoader(data[:1], batch_size=1))
    return seen.epochs, seen.ran


def test_slow_validation_runs_first_and_last_only() -> None:
    # 0.3 s of training per epoch pays 15 ms of validation at 5%: a 0.2 s round needs 14
    epochs, ran = _run(share=0.05, val_s=0.2)
    assert ran == [0, 1, 2, 3, 4, 5] and epochs == [0, 5]


def test_cheap_validation_runs_every_epoch() -> None:
    epochs, _ = _run(share=1.0, val_s=0.005)
    assert epochs == [0, 1, 2, 3, 4, 5]


def test_the_epoch_the_time_limit_stops_is_validated() -> None:
    epochs, ran = _run(share=0.05, val_s=0.2, epochs=50, stop_after_s=1.5)
    assert 3 <= len(ran) < 50  # stopped by the clock, well before the cap
    assert epochs == [0, ran[-1]]


def test_share_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match="share"):
        ValidationPacing(0.0)
