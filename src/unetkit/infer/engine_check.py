"""The agreement check and speed measurement behind `--engine auto` and `export --precision
int8`: each candidate engine predicts the run's own validation images through `Predictor`
(the predict path: scale, tiling, thresholding), its masks are compared pixel by pixel with
float32 PyTorch's, and its time per image is taken after one warm-up prediction.

The images come through the data layer: the run's config.yaml names the data set and its
format, splits.json which images were validation (the check; test when there is no val) and
training (calibration of the int8 model). The graphs are built once per process (`Graphs`):
the float32 export (model.onnx reused while up to date) and the int8 model (model.int8.onnx
reused the same way, written only once it has passed the check).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from unetkit.data.formats import Sample, open_dataset
from unetkit.data.loading import read_sample_image
from unetkit.data.splits import load_splits
from unetkit.errors import UnetkitError, UsageError
from unetkit.infer.engine_records import AGREEMENT, record_key, stamp
from unetkit.infer.engines import INT8, build_runner
from unetkit.infer.onnx import ONNX_NAME, export_onnx, fresh_export
from unetkit.infer.predict import Predictor
from unetkit.infer.quantize import CALIBRATION_BATCHES, INT8_NAME, int8_bytes
from unetkit.io_utils import atomic_write_bytes
from unetkit.progress import progress

CHECK_IMAGES = 3  # validation images each engine predicts (after one warm-up prediction),
MIN_CHECK_IMAGES, CHECK_SECONDS = 2, 3.0  # fewer (not under 2) when float32 PyTorch would
# take more than CHECK_SECONDS for them: the check stays seconds per engine on large images


def _spread(samples: list[Sample], count: int) -> list[Sample]:
    """Up to `count` samples spread evenly over the list (deterministic)."""
    if len(samples) <= count:
        return list(samples)
    step = (len(samples) - 1) / max(count - 1, 1)
    return [samples[round(i * step)] for i in range(count)]


@dataclass
class RunImages:
    """A run's training and validation samples, read only when needed."""

    train: list[Sample]
    val: list[Sample]
    where: str  # which split of which run the check images are, for messages and records

    def check_images(self) -> list[np.ndarray]:
        return [read_sample_image(s) for s in _spread(self.val, CHECK_IMAGES)]

    def calibration_images(self) -> list[np.ndarray]:
        return [read_sample_image(s) for s in _spread(self.train, CALIBRATION_BATCHES)]


def run_images(path: str | Path, directory: Path) -> RunImages | None:
    """The images of the run MODEL came from, or None when MODEL is no run (no splits.json
    and config.yaml beside the artifact) or its data cannot be opened any more."""
    run = next((d for d in (Path(path), directory.parent)
                if (d / "splits.json").is_file() and (d / "config.yaml").is_file()), None)
    if run is None:
        return None
    try:
        config = yaml.safe_load((run / "config.yaml").read_text()) or {}
        spec = open_dataset(config["data"], config.get("format", "auto"),
                            **(config.get("format_options") or {}))
        splits = load_splits(run / "splits.json")
    except (UnetkitError, KeyError, OSError, ValueError, yaml.YAMLError):
        return None
    by_name = {s.name: s for s in spec.samples}
    pick = {k: [by_name[n] for n in splits.get(k) or [] if n in by_name]
            for k in ("train", "val", "test")}  # (a folds run also lists its folds)
    check = "val" if pick.get("val") else "test"
    return RunImages(pick.get("train", []), pick.get(check, []), f"the {check} split of {run}")


@dataclass
class Graphs:
    """The ONNX graphs the engines run, each built at most once."""

    model: nn.Module
    directory: Path
    images: RunImages | None
    opset: int | None = None
    built: dict[str, bytes] = field(default_factory=dict)

    def fp32(self) -> bytes:
        if "32" not in self.built:
            cached = fresh_export(self.directory, ONNX_NAME) if self.opset is None else None
            self.built["32"] = cached.read_bytes() if cached is not None else \
                export_onnx(self.model, **({} if self.opset is None else
                                           {"opset": self.opset})).data
        return self.built["32"]

    def int8(self) -> bytes:
        if INT8 not in self.built:
            cached = fresh_export(self.directory, INT8_NAME) if self.opset is None else None
            if cached is not None:
                self.built[INT8] = cached.read_bytes()
            else:
                if self.images is None or not self.images.train:
                    raise UsageError("--precision int8 calibrates on the run's training "
                                     f"images, and {self.directory} has no run (splits.json "
                                     "and readable data) beside it; pass the run directory.")
                self.built[INT8] = int8_bytes(self.model, self.images.calibration_images(),
                                              self.opset)
        return self.built[INT8]

    def for_precision(self, precision: str) -> bytes:
        return self.int8() if precision == INT8 else self.fp32()

    def keep_int8(self) -> None:
        """Write the int8 model beside the artifact (it passed), for later runs to reuse."""
        if INT8 in self.built and fresh_export(self.directory, INT8_NAME) is None:
            with contextlib.suppress(UnetkitError):  # read-only: the next run quantises
                atomic_write_bytes(self.directory / INT8_NAME, self.built[INT8])


def runner(graphs: Graphs, engine: str, precision: str) -> tuple[Any, str]:
    """(what Predictor runs, the precision to give it) for one engine and precision."""
    if engine == "torch":
        return graphs.model, precision
    return build_runner(graphs.model, engine, precision, graphs.for_precision(precision)), \
        "auto"


def _predict_all(predictor: Predictor, images: list[np.ndarray], warm: bool = False
                 ) -> tuple[list[np.ndarray], float]:
    """The masks of `images` and the median ms per image (after one warm-up prediction,
    unless the predictor is `warm` already)."""
    if not warm:
        predictor.predict(images[0], name="check image 0")
    masks, times = [], []
    for i, image in enumerate(images):
        start = time.perf_counter()
        masks.append(predictor.predict(image, name=f"check image {i}"))
        times.append(1000 * (time.perf_counter() - start))
    return masks, statistics.median(times)


def measure(graphs: Graphs, pairs: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """Records for float32 PyTorch (the reference) and each (engine, precision): agreement
    of its masks with the reference's on the check images, status and ms per image."""
    if graphs.images is None or not graphs.images.val:
        raise ValueError("measure needs the run's validation images")
    images = graphs.images.check_images()
    reference = Predictor(graphs.model, precision="32")
    start = time.perf_counter()
    reference.predict(images[0], name="check image 0")  # also warms the reference up
    per_image = max(time.perf_counter() - start, 1e-6)
    images = images[:max(MIN_CHECK_IMAGES, int(CHECK_SECONDS / per_image))]
    pixels = sum(int(np.prod(im.shape[:2])) for im in images)
    reference_masks, ref_ms = _predict_all(reference, images, warm=True)
    common = {"images": len(images), "pixels": pixels, "checked_on": graphs.images.where,
              "image_size": list(images[0].shape[:2])}
    records = {record_key("torch", "32"): {"engine": "torch", "precision": "32", "agreement":
                                           1.0, "status": "passed", "ms_per_image":
                                           round(ref_ms, 3), **common}}
    todo = [p for p in pairs if p != ("torch", "32")]
    for engine, precision in progress(todo, total=len(todo), desc="checking engines",
                                      unit="engine"):
        entry: dict[str, Any] = {"engine": engine, "precision": precision, **common}
        try:
            net, run_at = runner(graphs, engine, precision)
            masks, ms = _predict_all(Predictor(net, precision=run_at), images)
        except Exception as exc:  # noqa: BLE001 — an engine that cannot be built is recorded
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            records[record_key(engine, precision)] = {
                **entry, "status": "failed", "error": f"{type(exc).__name__}: {first}"}
            continue
        agree = sum(int((m == r).sum()) for m, r in zip(masks, reference_masks, strict=True)
                    ) / pixels
        entry.update(agreement=round(agree, 6), ms_per_image=round(ms, 3),
                     status="passed" if agree >= AGREEMENT else "refused")
        records[record_key(engine, precision)] = entry
    if any(r.get("status") == "passed" and r["precision"] == INT8 for r in records.values()):
        graphs.keep_int8()
    return {k: stamp(v, torch.get_num_threads()) for k, v in records.items()}
