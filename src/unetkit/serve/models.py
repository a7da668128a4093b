"""The studio's models: the current one, loaded once, and every one trained since.

Predictions run one at a time per process (a lock), behind a bounded queue: when
`queue` requests already wait, the next gets 429 at once instead of holding memory.
Callers run them in a worker thread, so the event loop never waits on a model. What a
prediction yields is kept compact (16-bit probability, 8-bit classes and entropy); its
uncertainty is the entropy of the one deterministic pass (see single_pass_maps).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetkit.infer.predict import Predictor
from unetkit.infer.uncertainty import (
    UncertaintyMaps,
    max_entropy,
    predictive_entropy,
    uncertainty_maps,
)
from unetkit.models.artifact import SAVE_ID, find_artifact, load_model, read_config
from unetkit.serve.errors import Busy, Conflict, NotFound


@dataclass
class Prediction:
    """One image's prediction: what every view of it (mask, probabilities, entropy) needs."""

    probability: np.ndarray  # HxW uint16: foreground (binary) or the winning class
    classes: np.ndarray | None  # HxW uint8 argmax (multi-class models)
    entropy: np.ndarray  # HxW uint8 normalised predictive entropy, 0..255
    maps: UncertaintyMaps  # its summaries (maps emptied)

    @classmethod
    def of(cls, probs: np.ndarray, maps: UncertaintyMaps, binary: bool) -> Prediction:
        if binary:
            top, classes = probs[0], None
        else:
            classes = probs.argmax(0).astype(np.uint8)
            top = np.take_along_axis(probs, classes[None].astype(np.int64), 0)[0]
        prob16 = np.round(np.asarray(top, dtype=np.float32) * 65535).astype(np.uint16)
        entropy = np.round(np.asarray(maps.entropy, dtype=np.float32) * 255).astype(np.uint8)
        empty = np.zeros((0, 0), dtype=np.float16)
        return cls(prob16, classes, entropy, replace(maps, entropy=empty, mutual_info=None))

    def mask(self, threshold: float = 0.5) -> np.ndarray:
        """HxW class indices; the threshold applies to binary models."""
        if self.classes is not None:
            return self.classes
        return (self.probability > round(threshold * 65535)).astype(np.uint8)

    @property
    def nbytes(self) -> int:
        return self.probability.nbytes + self.entropy.nbytes + \
            (0 if self.classes is None else self.classes.nbytes)

    def with_maps(self) -> UncertaintyMaps:
        """The summaries with the entropy map restored (0..1), as rank_images expects."""
        return replace(self.maps, entropy=self.entropy.astype(np.float32) / 255)


def single_pass_maps(probs: np.ndarray, binary: bool) -> UncertaintyMaps:
    """The entropy of one deterministic prediction (source "single"): the studio shows
    and ranks by it rather than by Monte-Carlo dropout, which costs 8 passes per image."""
    t = torch.from_numpy(np.asarray(probs, dtype=np.float32))
    entropy = predictive_entropy(t, binary) / max_entropy(2 if binary else t.shape[0])
    return uncertainty_maps(t, entropy, binary, members=1, source="single")


@dataclass
class ModelEntry:
    id: str
    name: str
    path: Path  # the run directory (or artifact directory) it was loaded from
    created: str
    metrics: dict[str, Any] | None = None
    model: Any = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "path": str(self.path),
                "created": self.created, "metrics": self.metrics}


class ModelStore:
    """Models by id, the current one with its Predictor, and the prediction queue."""

    def __init__(self, device: str | None = None, queue: int = 32,
                 precision: str = "auto") -> None:
        self.device, self.precision = device, precision
        self.entries: list[ModelEntry] = []
        self.current: ModelEntry | None = None
        self.predictor: Predictor | None = None
        self._run = threading.Lock()
        self._slots = threading.BoundedSemaphore(queue)
        self.queue = queue

    def add(self, path: str | Path, metrics: dict[str, Any] | None = None,
            current: bool = True) -> ModelEntry:
        """Load a run or artifact directory; it becomes the current model unless asked."""
        path = Path(path)
        directory = find_artifact(path)
        config, _ = read_config(directory)
        weights = directory / "model.safetensors"
        model_id = str(config.get(SAVE_ID) or hashlib.sha1(
            f"{weights.resolve()}:{weights.stat().st_mtime_ns}".encode()).hexdigest())[:12]
        created = datetime.fromtimestamp(weights.stat().st_mtime, timezone.utc)
        name = path.parent.name if path.name == "model" else path.name
        entry = ModelEntry(model_id, name, path, created.isoformat(timespec="seconds"),
                           metrics, load_model(path))
        self.entries = [e for e in self.entries if e.id != model_id] + [entry]
        if current:
            self.make_current(model_id)
        return entry

    def make_current(self, model_id: str) -> ModelEntry:
        entry = self.get(model_id)
        predictor = self.predictor_for(entry)
        with self._run:  # never swapped under a running prediction
            self.current, self.predictor = entry, predictor
        return entry

    def predictor_for(self, entry: ModelEntry) -> Predictor:
        return Predictor(entry.model, device=self.device, precision=self.precision)

    def get(self, model_id: str) -> ModelEntry:
        found = next((e for e in self.entries if e.id == model_id), None)
        if found is None:
            raise NotFound(f"No model with id {model_id!r}.")
        return found

    def require(self) -> tuple[ModelEntry, Predictor]:
        """The current model and its predictor; 409 before the first model exists."""
        entry, predictor = self.current, self.predictor
        if entry is None or predictor is None:
            raise Conflict("There is no model yet; annotate a few images and train one "
                           "(POST /api/train).")
        return entry, predictor

    @contextlib.contextmanager
    def turn(self, wait: bool = False) -> Iterator[None]:
        """Wait for the model (one prediction at a time); 429 when the queue is full,
        unless `wait` (background jobs queue up instead)."""
        if not self._slots.acquire(blocking=wait):
            raise Busy(f"The server is busy: {self.queue} predictions are already waiting; "
                       "try again shortly.")
        try:
            with self._run:
                yield
        finally:
            self._slots.release()

    def predict(self, image: np.ndarray, name: str = "image",
                predictor: Predictor | None = None, wait: bool = False) -> Prediction:
        """One image through the current model (or `predictor`), in the queue."""
        with self.turn(wait):
            predictor = predictor or self.require()[1]
            probs = predictor.probabilities(image, name=name)
        return Prediction.of(probs, single_pass_maps(probs, predictor.binary),
                             predictor.binary)

    def predict_mask(self, image: np.ndarray, threshold: float = 0.5,
                     name: str = "image") -> np.ndarray:
        """Only the mask (no uncertainty: one forward pass), in the queue: for uploads."""
        with self.turn():
            return self.require()[1].predict(image, threshold, name)

    def info(self) -> dict[str, Any] | None:
        if self.current is None or self.predictor is None:
            return None
        from unetkit.data.overlay import palette

        names = list(self.predictor.class_names)
        return {"id": self.current.id, "name": self.current.name,
                "binary": self.predictor.binary, "classes": names,
                "colors": palette(len(names)).tolist(), "has_uncertainty": True}
