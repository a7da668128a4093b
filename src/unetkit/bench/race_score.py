"""How `unetkit bench race` scores every entrant: the same held-out images, one scorer, and
a training clock that stops while it scores.

The held-out images are the decoded cache's (the working resolution `fit` trains at), fed
whole (padded to a multiple of 32, cropped back), in float32 and eval mode; one confusion
matrix is pooled over them and reduced by `unetkit.scoring.summarise`: foreground Dice for a
binary task, mean IoU over all classes for a multi-class one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from unetkit.data.prepare import PreparedData
from unetkit.data.readers import match_channels
from unetkit.models.layers import pad_to_multiple
from unetkit.progress import say
from unetkit.scoring import confusion, predictions, summarise
from unetkit.train.callbacks import TrainingClock

PAD_MULTIPLE = 32  # the deepest stride of the entrants (smp's resnet34 needs it)


@dataclass
class HeldOut:
    """The held-out images (H×W×C uint8) and masks (class index, 255 ignored)."""

    images: list[np.ndarray]
    masks: list[np.ndarray]
    class_names: list[str]

    @classmethod
    def from_data(cls, data: PreparedData, indices: list[int], channels: int) -> HeldOut:
        return cls([match_channels(np.asarray(data.cache.image(i)), channels) for i in indices],
                   [np.array(data.cache.mask(i)) for i in indices], list(data.mask.class_names))

    @property
    def binary(self) -> bool:
        return len(self.class_names) == 2

    @property
    def metric(self) -> str:
        """The score the race reports: foreground Dice (binary) or mean IoU (multi-class)."""
        return "dice" if self.binary else "mean_iou"


def score_model(model: nn.Module, held: HeldOut, mean: list[float], std: list[float],
                device: torch.device) -> float:
    """The race's score of `model`'s current weights (eval mode for the pass, then back).

    `model` may be unetkit's LightningModule: its forward lays the input out as it trains."""
    k = len(held.class_names)
    conf = np.zeros((k, k), dtype=np.int64)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for image, mask in zip(held.images, held.masks, strict=True):
                x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255
                x, (h, w) = pad_to_multiple((x - m) / s, PAD_MULTIPLE)
                logits = model(x.to(device))[..., :h, :w].float()
                conf += confusion(predictions(logits)[0].cpu().numpy(), mask, k)
    finally:
        model.train(was_training)
    return float(summarise(conf, held.class_names, held.binary)[held.metric])


@dataclass
class Scorer:
    """One entrant's curve: a score every `every_s` seconds of its training clock."""

    held: HeldOut
    every_s: float
    name: str
    device: torch.device
    quiet: bool = False
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    points: list[tuple[float, float]] = field(default_factory=list)
    scoring_s: float = 0.0
    offset_s: float = 0.0  # time spent before training (planning), added to every point
    next_at: float = 0.0  # the next multiple of every_s to score at

    def due(self, t: float) -> bool:
        """Whether the clock has reached the next scoring time."""
        return t >= self.next_at - 1e-9

    def score(self, t: float, model: nn.Module, clock: TrainingClock, steps: int) -> float:
        """Score now, with `clock` stopped; record (t, score)."""
        start = time.perf_counter()
        with clock.paused():
            value = score_model(model, self.held, self.mean, self.std, self.device)
        self.scoring_s += time.perf_counter() - start
        self.points.append((round(t + self.offset_s, 2), round(value, 6)))
        self.next_at = (math.floor(t / self.every_s + 1e-9) + 1) * self.every_s
        say(f"  {self.name}: {t + self.offset_s:.0f} s, {steps} steps, held-out "
            f"{self.held.metric} {value:.4f}", self.quiet)
        return value


def started_clock() -> TrainingClock:
    """unetkit's training clock, started by hand: the peers' loops are timed, and paused, by
    the same code as unetkit's Trainer."""
    clock = TrainingClock(None)
    clock.on_train_start(None, None)  # type: ignore[arg-type]  # it reads neither
    return clock


def clock_time(clock: TrainingClock, device: torch.device) -> float:
    """Training seconds so far, after the device has finished the queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return clock.time_elapsed()
