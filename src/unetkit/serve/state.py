"""The studio's state: the data set, the models, the caches and the jobs, and what the
routes ask of them (a cached prediction, its scores, a saved correction, suggestions).

The routes stay thin: each parses its request and calls one method here.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.errors import UnetkitError
from unetkit.scoring import class_scores, confusion, per_image_scores
from unetkit.serve.cache import ByteLRU
from unetkit.serve.dataset import Entry, StudioData
from unetkit.serve.jobs import JobRegistry
from unetkit.serve.models import ModelStore, Prediction
from unetkit.serve.training import Trainer

log = logging.getLogger("unetkit.serve")


@dataclass
class Settings:
    """The serve flags that shape the server's behaviour."""

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    max_upload_mb: float = 50.0
    max_pixels: int = 100_000_000
    device: str | None = None
    cache_mb: int = 512  # predictions kept in memory
    queue: int = 32  # predictions that may wait for the model before 429
    python: str = sys.executable  # runs `-m unetkit fit` for training jobs


def studio_version() -> str:
    """The installed unetkit's version (from its metadata: the stages never import the
    package's own __init__)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("unetkit")
    except PackageNotFoundError:
        return "unknown"


class Studio:
    """Everything one `unetkit serve` process holds."""

    def __init__(self, data: StudioData, models: ModelStore, settings: Settings) -> None:
        self.data, self.models, self.settings = data, models, settings
        self.predictions = ByteLRU(settings.cache_mb * 2**20)
        self.thumbs = ByteLRU(32 * 2**20)
        self.jobs = JobRegistry()
        self.training = Trainer(self, settings.python)

    @classmethod
    def open(cls, data: str | Path, model: str | Path | None = None,
             settings: Settings | None = None, class_names: list[str] | None = None
             ) -> Studio:
        """Open the data folder and load the model (if any) once, for the whole process."""
        settings = settings or Settings()
        models = ModelStore(settings.device, settings.queue)
        if model is not None:
            models.add(model)
        return cls(StudioData(data, class_names), models, settings)

    def info(self) -> dict[str, Any]:
        return {"version": studio_version(), "model": self.models.info(),
                "data": self.data.info(), "training": self.training.status()}

    # ------------------------------------------------------------------ predictions
    def prediction(self, image: Entry, wait: bool = False) -> Prediction:
        """The current model's prediction of a data set image: once per model and file."""
        entry, predictor = self.models.require()
        key = (entry.id, image.name, image.path.stat().st_mtime_ns)
        found = self.predictions.get(key)
        if found is None:
            found = self.models.predict(self.data.read_image(image), image.name, predictor,
                                        wait)
            self.predictions.put(key, found, found.nbytes)
        return found

    def metrics(self, image: Entry, threshold: float) -> dict[str, Any]:
        """Prediction against the mask, over the annotated pixels only."""
        truth = self.data.read_truth(image)
        empty = {"has_truth": False, "dice": None, "iou": None, "per_class": {}}
        if truth is None:
            return empty
        pred = self.prediction(image).mask(threshold)
        names = self.models.predictor.class_names
        k = len(names)
        conf = confusion(pred, truth, k)
        if conf.sum() == 0:  # nothing annotated yet
            return {**empty, "has_truth": True}
        iou, dice = class_scores(conf)
        scores = per_image_scores(pred, truth, k)
        return {"has_truth": True, "dice": scores["dice"], "iou": scores["iou"],
                "per_class": {n: {"dice": float(dice[i]), "iou": float(iou[i])}
                              for i, n in enumerate(names)}}

    def score(self, predictor: Any) -> dict[str, Any] | None:
        """A model's scores on the labelled images (None when it cannot score them)."""
        from unetkit.infer.evaluate import evaluate_samples

        samples = [i.sample for i in self.data.labelled()]
        if not samples:
            return None
        try:
            m = evaluate_samples(_Queued(self.models, predictor), samples, self.data.spec,
                                 quiet=True).metrics
        except UnetkitError as exc:
            log.warning("could not score a model on the labelled images: %s", exc)
            return None
        dice = m.get("dice", m.get("mean_dice_foreground"))
        iou = m.get("iou", m.get("mean_iou_foreground"))
        return {"images": m["images"], "dice": dice, "iou": iou,
                "mean_dice": m["mean_dice"], "mean_iou": m["mean_iou"]}

    # ------------------------------------------------------------------ masks
    def save_mask(self, image: Entry, index: np.ndarray) -> dict[str, Any]:
        saved, previous = self.data.save_mask(image, index)
        return {"saved": saved, "previous": previous}

    def accept(self, image: Entry, threshold: float) -> dict[str, Any]:
        """The current prediction saved as the image's mask."""
        return self.save_mask(image, self.prediction(image).mask(threshold))

    # ------------------------------------------------------------------ suggestions
    def suggest(self, top: int) -> list[dict[str, Any]]:
        """Unlabelled images, the most useful to correct first (infer.rank's ranking)."""
        self.models.require()
        free = [i for i in self.data.images() if i.mask is None]
        if not free:
            return []
        try:
            from unetkit.infer.rank import rank_images
        except ImportError:  # before rank existed: lowest mean confidence first
            return self._least_confident(free, top)
        by_path = {str(i.path): i for i in free}
        ranked = rank_images(_FromCache(self, by_path), [i.sample for i in free], top=top,
                             quiet=True)
        return [{"name": by_path[r.image].name, "score": round(float(r.score), 6),
                 "reason": r.reason} for r in ranked if r.image in by_path]

    def _least_confident(self, free: list[Entry], top: int) -> list[dict[str, Any]]:
        rows = []
        for image in free:
            pred = self.prediction(image, wait=True)
            p = pred.probability.astype(np.float32) / 65535
            confidence = float((np.maximum(p, 1 - p) if pred.classes is None else p).mean())
            rows.append({"name": image.name, "score": round(1 - confidence, 6),
                         "reason": f"mean confidence {confidence:.3f}"})
        return sorted(rows, key=lambda r: -r["score"])[:top]


class _Queued:
    """A Predictor whose predictions wait their turn in the studio's queue."""

    def __init__(self, models: ModelStore, predictor: Any) -> None:
        self._models, self._predictor = models, predictor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._predictor, name)

    def predict(self, image: np.ndarray, threshold: float = 0.5, name: str = "image"
                ) -> np.ndarray:
        with self._models.turn(wait=True):
            return self._predictor.predict(image, threshold, name)


class _FromCache:
    """What infer.rank asks a predictor for, answered from the studio's prediction cache."""

    def __init__(self, studio: Studio, by_path: dict[str, Entry]) -> None:
        self._studio, self._by_path = studio, by_path

    def probabilities_with_uncertainty(self, image: np.ndarray, name: str = "image"
                                       ) -> tuple[np.ndarray, Any]:
        pred = self._studio.prediction(self._by_path[name], wait=True)
        return pred.probability[None].astype(np.float32) / 65535, pred.with_maps()
