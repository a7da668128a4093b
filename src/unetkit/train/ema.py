"""An exponential moving average of the weights, which validation, the model artifact and
the race score instead of the last step's weights.

A time-limited run on a small data set spends most of its budget on the plateau, where the
last step's weights wander around a good model from step to step; their average sits
nearer its centre and moves less (docs/decisions.md, "Weights are averaged"). The average
is updated in place after every optimiser step with one fused lerp over all float tensors
(parameters and buffers such as BatchNorm's running statistics; integer buffers are
copied), so it costs about as much as one extra elementwise pass over the weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from torch import nn


def warm_decay(decay: float, updates: int) -> float:
    """The decay after `updates` updates: (1 + n) / (10 + n) until it reaches `decay`, so an
    early average is not dominated by the random start."""
    return min(decay, (1 + updates) / (10 + updates))


def _named(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every parameter, then every buffer, by name (the order of the average's list)."""
    return [*((n, p.detach()) for n, p in model.named_parameters()),
            *((n, b.detach()) for n, b in model.named_buffers())]


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    return [t for _, t in _named(model)]


class WeightAverage(L.Callback):
    """Keep the average beside the model; swap it in for validation (and with it the model
    artifact written on a new best) and for `applied()`; keep it in every checkpoint."""

    def __init__(self, decay: float = 0.99) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), not {decay}")
        self.decay = decay
        self.updates = 0
        self.average: list[torch.Tensor] | None = None
        self.names: list[str] = []  # of the average's tensors, as the model names them
        self._restored: dict[str, torch.Tensor] | None = None  # a checkpoint's, until fit
        self._step = -1
        self._held: list[torch.Tensor] | None = None  # the trained weights while swapped out

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        named = _named(pl_module.model)
        self.names = [n for n, _ in named]
        self.average = [t.clone() for _, t in named]  # same device, dtype and memory layout
        if self._restored is not None:
            if sorted(self._restored) != sorted(self.names):
                raise ValueError("the checkpoint's weight average does not match this model")
            torch._foreach_copy_(self.average, [self._restored[n].to(a.device) for n, a in
                                                zip(self.names, self.average, strict=True)])
            self._restored = None
        self._step = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.average is None or trainer.global_step == self._step:
            return  # no optimiser step since the last update (gradient accumulation)
        self._step = trainer.global_step
        self.update(_tensors(pl_module.model))

    @torch.no_grad()
    def update(self, current: list[torch.Tensor]) -> None:
        """Move the average towards `current` by 1 - decay (warmed up; see warm_decay)."""
        assert self.average is not None
        weight = 1.0 - warm_decay(self.decay, self.updates)
        floats = [(a, c) for a, c in zip(self.average, current, strict=True)
                  if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], weight)
        for a, c in zip(self.average, current, strict=True):
            if not a.is_floating_point():
                a.copy_(c)
        self.updates += 1

    @torch.no_grad()
    def swap_in(self, model: nn.Module) -> None:
        """Put the average into `model`, keeping its trained weights aside."""
        if self.average is None or self._held is not None:
            return
        current = _tensors(model)
        self._held = [t.clone() for t in current]
        torch._foreach_copy_(current, self.average)

    @torch.no_grad()
    def swap_out(self, model: nn.Module) -> None:
        """Give `model` back the trained weights that swap_in put aside."""
        if self._held is None:
            return
        torch._foreach_copy_(_tensors(model), self._held)
        self._held = None

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """`model` holds the average inside the block (the race scores it this way)."""
        self.swap_in(model)
        try:
            yield
        finally:
            self.swap_out(model)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.swap_in(pl_module.model)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after ArtifactOnBest (earlier in the list), before ModelCheckpoint (Lightning runs
        # it last): the artifact gets the average, a checkpoint the trained weights to resume
        self.swap_out(pl_module.model)

    def state_dict(self) -> dict[str, Any]:
        if self.average is None:
            return {}
        return {"updates": self.updates,
                "average": {n: a.detach().cpu() for n, a in zip(self.names, self.average,
                                                                strict=True)}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "average" in state_dict:
            self.updates = int(state_dict["updates"])
            self._restored = dict(state_dict["average"])


def weight_average(trainer: L.Trainer) -> WeightAverage | None:
    """The trainer's WeightAverage callback, if the run averages its weights."""
    return next((c for c in trainer.callbacks if isinstance(c, WeightAverage)), None)
