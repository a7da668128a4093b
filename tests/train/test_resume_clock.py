"""A --max-time run killed half-way and resumed follows the uninterrupted LR schedule.

The training clock is Lightning's Timer (saved in every checkpoint); a fake clock that ticks
one second per training step makes the two runs comparable step by step.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.callbacks import timer as timer_module
from torch.utils.data import DataLoader, TensorDataset

from unetkit import build_model
from unetkit.train.callbacks import training_clock
from unetkit.train.losses import build_loss
from unetkit.train.module import SegmentationModule
from unetkit.train.schedules import lr_factor

BUDGET_S = 20.0  # 20 fake seconds = 20 steps
STEPS_PER_EPOCH = 4
LR = 1e-2


class FakeClock:
    """Stands in for the `time` module inside Lightning's timer: ticks only when told."""

    def __init__(self, start: float) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now


class Tick(L.Callback):
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.lrs: dict[int, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs[trainer.global_step] = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.clock.now += 1.0


class Killed(Exception):
    pass


class KillAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise Killed


def _train(tmp: Path, clock: FakeClock, resume: bool = False, kill_at: int | None = None
           ) -> dict[int, float]:
    torch.manual_seed(0)
    x = torch.randn(STEPS_PER_EPOCH * 2, 1, 16, 16)
    y = (x > 0).float()
    loader = DataLoader(TensorDataset(x, y), batch_size=2)
    model = build_model("unet", in_channels=1, classes=1, filters=4, depth=2)
    module = SegmentationModule(model, build_loss("bce", 1), 2, ["bg", "fg"], "adam", LR,
                                0.0, "onecycle", BUDGET_S)
    tick = Tick(clock)
    callbacks = [tick, training_clock(BUDGET_S),  # the tick lands before the Timer looks
                 ModelCheckpoint(dirpath=tmp, filename="epoch", save_last=True)]
    if kill_at is not None:
        callbacks.append(KillAt(kill_at))
    trainer = L.Trainer(max_epochs=-1, accelerator="cpu", logger=False, callbacks=callbacks,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0)
    with contextlib.suppress(Killed):
        trainer.fit(module, loader, ckpt_path=str(tmp / "last.ckpt") if resume else None)
    return tick.lrs


def test_resumed_max_time_run_keeps_the_schedule(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(1000.0)
    monkeypatch.setattr(timer_module, "time", clock)
    full = _train(tmp_path / "full", clock)
    assert sorted(full) == list(range(int(BUDGET_S)))  # the Timer ended it at the budget
    # the schedule is a function of the clock: the rate step k uses was set at the end of
    # step k-1 (the scheduler steps after the optimizer, before that step's tick)
    for step, lr in full.items():
        used = max(step - 1, 0)
        assert lr == pytest.approx(LR * lr_factor("onecycle", used / BUDGET_S), rel=1e-6), step

    cut = tmp_path / "cut"
    clock.now = 5000.0  # a new process: its own clock reading, unrelated to the first
    _train(cut, clock, kill_at=10)  # killed at 50%; last.ckpt holds the end of epoch 2
    assert torch.load(cut / "last.ckpt", weights_only=False)["global_step"] == 8
    clock.now = 9000.0
    resumed = _train(cut, clock, resume=True)
    assert sorted(resumed) == list(range(8, int(BUDGET_S)))  # same deadline, not 20 more
    for step, lr in resumed.items():
        assert lr == pytest.approx(full[step], rel=1e-6), step  # no second warm-up
