"""The LightningModule: one training/validation step for every U-Net, loss and metric."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer
from torch import nn

from unetkit.errors import UsageError
from unetkit.models.layers import float32_strided_depthwise
from unetkit.train.edge_loss import edge_aware_smoothness
from unetkit.train.metrics import confusion_metric, predictions, scores_from_confusion
from unetkit.train.schedules import lr_factor

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")


def build_optimizer(name: str, params: Any, lr: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":  # the U-Net paper's high momentum
        return torch.optim.SGD(params, lr=lr, momentum=0.99, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay, momentum=0.9)
    raise UsageError(f"--optimizer {name!r} is unknown; choose one of {', '.join(OPTIMIZERS)}.")


class SegmentationModule(L.LightningModule):
    """Wraps a model with its loss, optimiser, schedule and confusion-matrix metrics."""

    def __init__(self, model: nn.Module, loss: nn.Module, num_classes: int, class_names: list[str],
                 optimizer: str = "adamw", lr: float = 1e-3, weight_decay: float = 1e-4,
                 scheduler: str = "onecycle", max_time: float | None = None,
                 channels_last: bool = False, float32_depthwise: bool = False) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.num_classes = num_classes  # metric classes: 2 for a binary (1-logit) model
        self.class_names = class_names
        self.optimizer_name, self.lr, self.weight_decay = optimizer, lr, weight_decay
        self.scheduler_name, self.max_time = scheduler, max_time
        self.channels_last = channels_last
        if channels_last:  # weights too: their gradients then match DDP's buckets
            model.to(memory_format=torch.channels_last)
        if float32_depthwise:
            float32_strided_depthwise(model)
        self.train_conf = confusion_metric(num_classes)
        self.val_conf = confusion_metric(num_classes)
        self._start = time.monotonic()  # only without a trainer Timer (bench, probe)
        self.edge_weight = 0.0  # edge-aware smoothness on every pixel (partial labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def shared_step(self, batch: tuple[torch.Tensor, ...]
                    ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Loss, logits and the (centre-cropped for valid models) targets of one batch."""
        x, y = batch[0], batch[1]
        weights = batch[2] if len(batch) > 2 else None
        logits = self(x)
        if logits.shape[-2:] != y.shape[-2:]:  # valid-padding models predict a centre window
            dh, dw = (y.shape[-2] - logits.shape[-2]) // 2, (y.shape[-1] - logits.shape[-1]) // 2
            y = y[..., dh:dh + logits.shape[-2], dw:dw + logits.shape[-1]]
            if weights is not None:
                weights = weights[..., dh:dh + logits.shape[-2], dw:dw + logits.shape[-1]]
        loss = self.loss(logits, y, weights) if weights is not None else self.loss(logits, y)
        if self.edge_weight:
            loss = loss + self.edge_weight * edge_aware_smoothness(logits, x)
        return loss, logits, y

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        loss, logits, y = self.shared_step(batch)
        self.train_conf.update(predictions(logits.detach()), y)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True,
                 batch_size=y.shape[0], sync_dist=True)  # the mean over all DDP processes
        return loss

    def on_train_epoch_end(self) -> None:
        self._log_scores("train", self.train_conf)

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        loss, logits, y = self.shared_step(batch)
        self.val_conf.update(predictions(logits), y)
        self.log("val/loss", loss, on_epoch=True, batch_size=y.shape[0], sync_dist=True)
        if batch_idx == 0:
            self.first_val_batch = (batch[0][:4].detach().cpu(), y[:4].detach().cpu(),
                                    predictions(logits[:4]).detach().cpu())

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val", self.val_conf)

    def _log_scores(self, stage: str, conf_metric: Any) -> None:
        scores = scores_from_confusion(conf_metric.compute())  # plain floats, numpy arrays
        conf_metric.reset()
        self.log(f"{stage}/mean_dice", scores["mean_dice"], prog_bar=stage == "val",
                 sync_dist=True)
        self.log(f"{stage}/mean_iou", scores["mean_iou"], sync_dist=True)
        self.log(f"{stage}/pixel_accuracy", scores["pixel_accuracy"], sync_dist=True)
        if self.num_classes == 2:
            self.log(f"{stage}/dice", float(scores["dice"][1]), prog_bar=stage == "val",
                     sync_dist=True)
            self.log(f"{stage}/iou", float(scores["iou"][1]), sync_dist=True)

    def progress(self) -> float:
        """Fraction of the training done, by steps or by wall time, whichever is further."""
        total = self.trainer.estimated_stepping_batches  # inf without an epoch cap
        p = self.trainer.global_step / max(total, 1) if math.isfinite(total) else 0.0
        if self.max_time:
            p = max(p, self.time_used() / self.max_time)
        return p

    def on_train_start(self) -> None:
        self._start = time.monotonic()

    def time_used(self) -> float:
        """Training wall time so far, earlier runs of a resumed training included.

        The trainer's Timer callback is the one clock (it stops --max-time runs and is
        restored from the checkpoint); without one, time since training started.
        """
        trainer = self._trainer
        timers = [c for c in trainer.callbacks if isinstance(c, Timer)] if trainer else []
        if timers:
            return timers[0].time_elapsed("train")
        return time.monotonic() - self._start

    def configure_optimizers(self) -> Any:
        # all parameters, frozen ones included: an encoder unfrozen later must train too
        params = list(self.model.parameters())
        opt = build_optimizer(self.optimizer_name, params, self.lr, self.weight_decay)
        lr_factor(self.scheduler_name, 0.0)  # validates the name before training starts
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda _: lr_factor(self.scheduler_name, self.progress() if self._trainer else 0))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def manual_step(module: SegmentationModule, optimizer: torch.optim.Optimizer,
                batch: tuple[torch.Tensor, ...], precision: str,
                shared_step: Callable[[tuple[torch.Tensor, ...]], Any] | None = None
                ) -> torch.Tensor:
    """One optimisation step as Lightning's loop takes it (autocast, the module's own step and
    training metrics, backward, optimiser step), for the planner's probe and the bench.
    `shared_step` replaces `module.shared_step` (a DDP wrapper of it all-reduces gradients)."""
    from unetkit.device import autocast_context

    with autocast_context(module.device, precision):
        loss, logits, y = (shared_step or module.shared_step)(batch)
    module.train_conf.update(predictions(logits.detach()), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()
