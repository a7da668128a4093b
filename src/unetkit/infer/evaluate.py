"""`unetkit evaluate`: honest metrics at each image's original size, through the predict path.

Semantics, stated because tools differ: per-class IoU/Dice pool all pixels of the evaluated
images (micro over pixels, per class); `mean_iou`/`mean_dice` are the macro mean over classes
(background included, the ignore value excluded); top-level `dice`/`iou` are the foreground
class of a binary task. Per-image scores (per_image.csv) average the foreground classes, and
an image with no foreground in truth and prediction scores Dice 1 (the empty-mask rule).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from unetkit.data.formats import MaskSpec, Sample, open_dataset
from unetkit.data.loading import read_mask
from unetkit.data.readers import read_image
from unetkit.errors import UnetkitError, UsageError
from unetkit.infer.predict import Predictor
from unetkit.infer.seg_metrics import confusion, per_image_scores, summarise
from unetkit.io_utils import atomic_write_text
from unetkit.progress import progress

SPLITS = ("auto", "train", "val", "test", "all")


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    per_image: list[dict[str, Any]] = field(default_factory=list)
    split: str = "all"


def mask_spec_of(model: nn.Module) -> MaskSpec:
    spec = (getattr(model, "unetkit_meta", {}) or {}).get("mask_spec")
    if not spec:
        return MaskSpec(kind="binary")
    value_map = {int(k): v for k, v in spec["value_map"].items()} if spec.get("value_map") else None
    return MaskSpec(kind=spec["kind"], class_names=spec["class_names"],
                    ignore_index=spec.get("ignore_index"), value_map=value_map,
                    colors=spec.get("colors"))


def choose_samples(samples: list[Sample], split: str, run_dir: Path | None,
                   same_data: bool) -> tuple[list[Sample], str]:
    """The run's own split when evaluating on the run's data set, else every image."""
    if split not in SPLITS:
        raise UsageError(f"--split {split!r} is unknown; choose one of {', '.join(SPLITS)}.")
    splits_path = run_dir / "splits.json" if run_dir else None
    if split == "all" or not same_data or splits_path is None or not splits_path.is_file():
        if split not in ("auto", "all") and not same_data:
            raise UsageError(f"--split {split} needs the run's own data set; this data is not "
                             "the one the run trained on, so use --split all.")
        return samples, "all"
    splits = json.loads(splits_path.read_text())
    if split == "auto":
        split = "test" if splits.get("test") else "val"
    wanted = set(splits.get(split, []))
    chosen = [s for s in samples if s.name in wanted]
    if not chosen:
        raise UnetkitError(f"The run's {split} split is empty; use --split all or another split.")
    return chosen, split


def evaluate_samples(predictor: Predictor, samples: list[Sample], spec: MaskSpec,
                     quiet: bool = False, hd95: bool = False,
                     postprocess: Any = None) -> Evaluation:
    k = 2 if predictor.binary else len(predictor.class_names)
    total = np.zeros((k, k), dtype=np.int64)
    rows = []
    for s in progress(samples, total=len(samples), desc="Evaluating", disable=quiet):
        image = read_image(s.image, s.image_page)
        truth = read_mask(s, spec)
        if truth.shape != image.shape[:2]:
            raise UnetkitError(f"{s.mask} does not match the size of {s.image} (mask size "
                               "mismatch).")
        pred = predictor.predict(image, name=str(s.image))
        if postprocess is not None:
            pred = postprocess(pred)
        total += confusion(pred, truth, k)
        row = {"file": s.name, **per_image_scores(pred, truth, k)}
        if hd95:
            from unetkit.infer.seg_metrics import hd95 as hd95_fn

            for c in range(1, k):
                row[f"hd95_{predictor.class_names[c]}"] = hd95_fn(pred == c, truth == c)
        rows.append(row)
    metrics = {"images": len(samples), **summarise(total, predictor.class_names,
                                                    predictor.binary)}
    if hd95 and rows:
        for c in range(1, k):
            key = f"hd95_{predictor.class_names[c]}"
            vals = [r[key] for r in rows if not np.isnan(r[key])]
            metrics["per_class"][predictor.class_names[c]]["hd95"] = \
                float(np.mean(vals)) if vals else float("nan")
    return Evaluation(metrics, rows)


def write_per_image(rows: list[dict[str, Any]], path: Path) -> None:
    if not rows:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def evaluate(model: nn.Module, data: str | Path, split: str = "auto", format: str = "auto",
             run_dir: Path | None = None, tta: bool = False, tile: int | None = None,
             quiet: bool = True, hd95: bool = False, device: str | None = None,
             postprocess: Any = None) -> Evaluation:
    """Evaluate a loaded model on a data folder; see the module docstring for the semantics."""
    meta = getattr(model, "unetkit_meta", {}) or {}
    fmt = format if format != "auto" else meta.get("data_format", "auto")
    try:
        spec = open_dataset(data, fmt)
    except UnetkitError:
        if fmt == format:
            raise
        spec = open_dataset(data, "auto")
    same = False
    if run_dir is not None and (run_dir / "config.yaml").is_file():
        import yaml

        trained_on = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("data")
        same = trained_on is not None and Path(trained_on).resolve() == Path(data).resolve()
    samples, used = choose_samples(spec.samples, split, run_dir, same)
    predictor = Predictor(model, device=device, tta=tta, tile=tile)
    result = evaluate_samples(predictor, samples, mask_spec_of(model), quiet, hd95, postprocess)
    result.split = used
    return result
