"""The training and inference runners the speed bench times: unetkit's real code paths and
the plain fp32 eager baseline loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

MEAN, STD = 0.5, 0.25


def make_batch(n: int, size: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic RGB images (normalised N×3×H×W float) and binary masks (N×H×W int64)."""
    from unetkit.data.synthetic import make_sample

    pairs = [make_sample(seed + i, (size[0], size[1]), 3) for i in range(n)]
    x = torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(np.stack([p[1] for p in pairs]) > 0).long()
    return ((x - MEAN) / STD).contiguous(), y


class UnetkitTrainer:
    """unetkit's real training step: SegmentationModule.training_step, backward, step."""

    def __init__(self, model: nn.Module, device: torch.device, channels_last: bool = True,
                 precision: str = "auto", schedule: bool = True,
                 float32_depthwise: bool | None = None) -> None:
        from unetkit.device import resolve_precision
        from unetkit.train.defaults import float32_depthwise_for
        from unetkit.train.losses import build_loss
        from unetkit.train.module import SegmentationModule, build_optimizer

        self.device = device
        self.precision = resolve_precision(precision, device)
        self.float32_depthwise = float32_depthwise_for(self.precision, device.type) \
            if float32_depthwise is None else float32_depthwise
        self.module = SegmentationModule(
            model, build_loss("bce-dice", 1), 2, ["background", "foreground"],
            channels_last=channels_last,
            float32_depthwise=self.float32_depthwise).to(device).train()
        if schedule:  # what the Trainer steps: its optimizer and per-step LR schedule
            conf = self.module.configure_optimizers()
            self.optimizer = conf["optimizer"]
            self.scheduler = conf["lr_scheduler"]["scheduler"]
        else:  # constant LR, to compare losses with a plain loop
            m = self.module
            self.optimizer = build_optimizer(m.optimizer_name, list(m.model.parameters()), m.lr,
                                             m.weight_decay)
            self.scheduler = None
        self.steps = 0

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        from unetkit.train.module import manual_step

        loss = manual_step(self.module, self.optimizer, (x, y), self.precision)
        if self.scheduler is not None:
            self.scheduler.step()
        self.steps += 1
        return float(loss.detach())


class PlainTrainer:
    """The fp32 eager NCHW baseline loop on a unetkit model with unetkit's loss."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        from unetkit.train.losses import build_loss
        from unetkit.train.module import build_optimizer

        self.model = model.to(device).train()
        self.loss = build_loss("bce-dice", 1)
        self.optimizer = build_optimizer("adamw", list(model.parameters()), 1e-3, 1e-4)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


def predictor_forward(model: Any, device: torch.device, precision: str = "auto",
                      engine: str = "torch") -> Callable[[torch.Tensor], torch.Tensor]:
    """unetkit's predict path on a normalised batch: Predictor.batch_probabilities."""
    from unetkit.infer.predict import Predictor

    if engine == "torch":
        return Predictor(model, device=device, precision=precision).batch_probabilities
    return Predictor(model, device=device, precision=precision, engine=engine).batch_probabilities


def eager_probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """fp32 eager NCHW probabilities: the accuracy baseline for inference levers."""
    model.eval()
    with torch.inference_mode():
        return torch.sigmoid(model(x).float()).cpu()
