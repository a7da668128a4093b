"""unetkit: train, evaluate, run and export U-Net segmentation models."""

from __future__ import annotations

from typing import Any

import numpy as np

from unetkit.config import FitConfig
from unetkit.models.artifact import load_model, save_model
from unetkit.models.registry import build_model

__version__ = "0.1.0"
__all__ = ["FitConfig", "build_model", "evaluate", "fit", "load_model", "predict", "save_model"]


def fit(config: FitConfig, quiet: bool = False) -> Any:
    """Train to `config`; returns a FitResult with the run directory and validation metrics."""
    from unetkit.pipeline import run_fit

    return run_fit(config, quiet=quiet)


def predict(model: Any, images: list[np.ndarray], tile: int | None = None, tta: bool = False,
            threshold: float = 0.5, precision: str = "auto") -> list[np.ndarray]:
    """Masks (HxW uint8 class index) for HxWxC uint8 images, each at its own size.

    `precision` "auto" is bf16-mixed where the hardware runs it natively, else 32."""
    from unetkit.infer.predict import Predictor

    if not hasattr(model, "unetkit_meta"):
        model = load_model(model)
    predictor = Predictor(model, tile=tile, tta=tta, precision=precision)
    return [predictor.predict(img, threshold) for img in images]


def evaluate(model: Any, data: str, split: str = "all", **options: Any) -> dict[str, Any]:
    """The metrics JSON of DESIGN.md for a model on a data folder (`precision=` "auto" is
    float32 everywhere; the JSON records the engine and precision used)."""
    from pathlib import Path

    from unetkit.infer.evaluate import evaluate as _evaluate

    run_dir = None
    if not hasattr(model, "unetkit_meta"):
        run_dir = Path(model) if (Path(model) / "model").is_dir() else None
        model = load_model(model)
    return _evaluate(model, data, split, run_dir=run_dir, **options).metrics
