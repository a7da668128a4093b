"""The learning-rate range test (Smith 2015) via Lightning's tuner, plotted to lr_finder.png."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from unetkit.errors import UnetkitError
from unetkit.train.plots import plot_lr_curve

MIN_LR, MAX_LR, STEPS = 1e-6, 1.0, 60


def run_lr_find(module: L.LightningModule, loader: DataLoader, plot_path: Path,
                precision: str, device: torch.device, steps: int = STEPS) -> float:
    """Sweep the rate exponentially over `steps` batches; suggest the steepest loss descent."""
    from lightning.pytorch.tuner import Tuner

    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                            precision=precision, logger=False, enable_checkpointing=False,
                            enable_model_summary=False, default_root_dir=tmp, max_epochs=1000)
        steps = min(steps, max(len(loader), 1) * 1000)
        finder = Tuner(trainer).lr_find(module, train_dataloaders=loader, min_lr=MIN_LR,
                                        max_lr=MAX_LR, num_training=steps, update_attr=False,
                                        early_stop_threshold=4.0)
    if finder is None:
        raise UnetkitError("The learning-rate range test did not run (no training batches).")
    suggestion = finder.suggestion()
    if suggestion is None or not math.isfinite(suggestion):
        suggestion = 1e-3
    plot_lr_curve(finder.results["lr"], finder.results["loss"], suggestion, plot_path)
    return float(suggestion)
