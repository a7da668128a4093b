"""`unetkit evaluate`: honest metrics at each image's original size, through the predict path.

Semantics, stated because tools differ. Every image's confusion matrix is added up first
(pixels pooled over images), the ignore value excluded everywhere. Then:

- `per_class`: each class's IoU and Dice from the pooled pixels;
- `mean_iou`/`mean_dice`: macro mean over all classes, background included;
- `mean_iou_foreground`/`mean_dice_foreground`: macro mean over classes 1..K-1;
- `micro_iou`/`micro_dice`: TP, FP and FN summed over all classes, then scored once
  (micro_dice then equals pixel_accuracy);
- `micro_iou_foreground`/`micro_dice_foreground`: the same over classes 1..K-1;
- `dice`/`iou` (binary tasks only): the foreground class, equal to the foreground means.

A class absent from both truth and prediction scores 1.0 (the empty-mask rule). Per-image
scores (per_image.csv) average the foreground classes, and an image with no foreground in
truth and prediction scores Dice 1. `postprocess` (e.g. --keep-largest, --min-size) is
applied to each predicted mask before scoring, so its effect is measurable.

With `instances`, objects are scored too ("instances" in the JSON): predicted objects are
the connected components of the predicted foreground (split where they touch, unless
split_touching is off); true objects are the mask's own labels when it is a 16-bit (or
wider) label image, else the connected components of the true foreground (8-connected).
A predicted object matches a true one when their IoU is above 0.5 (one-to-one); tp, fp and
fn are summed over images and give precision, recall and F1; `mean_image_f1` is the mean of
the per-image F1 scores.

"calibration" scores the probabilities themselves over all scored pixels (infer/calibration.py):
ECE over 15 confidence bins and the per-bin reliability data, the AUROC of predictive entropy
against per-pixel errors, the share of errors among the 10% most uncertain pixels, and the
temperature the model was calibrated with (null when it never was).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from unetkit.data.formats import DatasetSpec, MaskSpec, Sample, open_dataset
from unetkit.data.loading import mask_label, read_mask, read_sample_image, read_sample_raw_mask
from unetkit.data.masks import to_class_index
from unetkit.data.prepare import declares_unlabeled, resolve_mask_spec
from unetkit.data.transforms import IGNORE
from unetkit.errors import UnetkitError, UsageError
from unetkit.infer.calibration import ImageCalibration
from unetkit.infer.instance_metrics import match_instances, ratio
from unetkit.infer.postprocess import label_instances
from unetkit.infer.predict import Predictor
from unetkit.infer.seg_metrics import confusion, per_image_scores, summarise
from unetkit.io_utils import atomic_write_text
from unetkit.progress import progress

SPLITS = ("auto", "train", "val", "test", "all")
IOU_THRESHOLD = 0.5


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    per_image: list[dict[str, Any]] = field(default_factory=list)
    split: str = "all"


def mask_spec_of(model: Any) -> MaskSpec:
    spec = (getattr(model, "unetkit_meta", {}) or {}).get("mask_spec")
    if not spec:
        return MaskSpec(kind="binary")
    value_map = {int(k): v for k, v in spec["value_map"].items()} if spec.get("value_map") else None
    return MaskSpec(kind=spec["kind"], class_names=spec["class_names"],
                    ignore_index=spec.get("ignore_index"), value_map=value_map,
                    colors=spec.get("colors"))


def truth_mask_spec(model_spec: MaskSpec, data: DatasetSpec) -> MaskSpec:
    """How to read this data's masks: as the model's training data was read, unless partial
    labels are on one side only.

    A model trained on partial labels (255 = unlabeled) scored on fully labelled 0/255 masks
    would ignore every foreground pixel, and the reverse would score 255 as foreground; so
    when the data leaves the mask encoding to detection and either side uses the unlabeled
    convention, the data's own reading (its classes.txt) is used, with the model's classes.
    """
    partial_model = model_spec.kind == "index" and model_spec.ignore_index == IGNORE
    if data.mask.kind != "auto" or not (partial_model or declares_unlabeled(data.root)):
        return model_spec
    own = resolve_mask_spec(data)
    k = model_spec.num_classes
    if own.kind in ("binary", "instance") and k == 2 or \
            own.kind == "index" and own.num_classes <= k:
        own.class_names = list(model_spec.class_names)
        return own
    raise UnetkitError(f"The masks in {data.root} hold {own.num_classes} classes ({own.kind}) "
                       f"but the model was trained on {k}.")


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
        split = "test" if splits.get("test") else "val" if splits.get("val") else "all"
        if split == "all":  # cross-validation runs: the ensemble has seen every image
            print("note: this run kept no held-out images (cross-validation); scoring all of "
                  "them, which the ensemble has seen in training.", file=sys.stderr)
            return samples, "all"
    wanted = set(splits.get(split, []))
    chosen = [s for s in samples if s.name in wanted]
    if not chosen:
        raise UnetkitError(f"The run's {split} split is empty; use --split all or another split.")
    return chosen, split


def _is_label_image(raw: np.ndarray) -> bool:
    return raw.ndim == 2 and raw.dtype.kind in "iu" and raw.dtype.itemsize >= 2


def load_truth(sample: Sample, spec: MaskSpec, shape: tuple[int, int]
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """(class-index truth, raw mask or None for run-length masks), reading the file once.

    A 16-bit (or wider) label image is read as instances (foreground = label > 0) even when
    the model's mask spec says binary: thresholding labels at 127 would drop most objects.
    """
    if sample.mask is None or sample.mask_rle is not None:
        return read_mask(sample, spec, shape), None
    raw = read_sample_raw_mask(sample)
    if spec.kind == "binary" and _is_label_image(raw):
        spec = MaskSpec(kind="instance")
    truth = to_class_index(raw, spec, mask_label(sample))
    if spec.ignore_index is not None and spec.ignore_index != IGNORE:
        truth = np.where(truth == spec.ignore_index, IGNORE, truth).astype(np.uint8)
    return truth, raw


def truth_instances(truth: np.ndarray, raw: np.ndarray | None) -> np.ndarray:
    """True object labels: the raw mask when it is a 16-bit (or wider) integer label image of
    the truth's size, else the 8-connected components of the true foreground."""
    if raw is not None and _is_label_image(raw) and raw.shape == truth.shape:
        return np.where(truth == IGNORE, 0, raw).astype(np.int64)
    fg = (truth > 0) & (truth != IGNORE)
    labels, _ = ndimage.label(fg, structure=np.ones((3, 3), dtype=bool))
    return labels


def evaluate_samples(predictor: Predictor, samples: list[Sample], spec: MaskSpec,
                     quiet: bool = False, hd95: bool = False,
                     postprocess: Any = None, instances: bool = False,
                     split_touching: bool = True) -> Evaluation:
    k = 2 if predictor.binary else len(predictor.class_names)
    total = np.zeros((k, k), dtype=np.int64)
    counts = {"tp": 0, "fp": 0, "fn": 0}
    rows = []
    calibration = ImageCalibration(predictor.binary, k)
    for s in progress(samples, total=len(samples), desc="Evaluating", disable=quiet):
        image = read_sample_image(s)
        truth, raw = load_truth(s, spec, image.shape[:2])
        if truth.shape != image.shape[:2]:
            raise UnetkitError(f"{s.mask} does not match the size of {s.image} (mask size "
                               "mismatch).")
        probs = predictor.probabilities(image, name=str(s.image))
        calibration.add(probs, truth)  # the probabilities, before any mask clean-up
        pred = predictor.mask_from_probabilities(probs)
        if postprocess is not None:
            pred = postprocess(pred)
        total += confusion(pred, truth, k)
        row = {"file": s.name, **per_image_scores(pred, truth, k)}
        if instances:
            found = match_instances(label_instances(pred > 0, split_touching=split_touching),
                                    truth_instances(truth, raw), IOU_THRESHOLD)
            for key in counts:
                counts[key] += found[key]
            row.update({"instance_f1": found["f1"], "instance_tp": found["tp"],
                        "instance_fp": found["fp"], "instance_fn": found["fn"]})
        if hd95:
            from unetkit.infer.seg_metrics import hd95 as hd95_fn

            for c in range(1, k):
                row[f"hd95_{predictor.class_names[c]}"] = hd95_fn(pred == c, truth == c)
        rows.append(row)
    metrics = {"images": len(samples), **summarise(total, predictor.class_names,
                                                    predictor.binary),
               "engine": predictor.engine, "precision": predictor.precision,
               "calibration": calibration.summary(predictor.meta.get("temperature"))}
    if hd95 and rows:
        for c in range(1, k):
            key = f"hd95_{predictor.class_names[c]}"
            vals = [r[key] for r in rows if not np.isnan(r[key])]
            metrics["per_class"][predictor.class_names[c]]["hd95"] = \
                float(np.mean(vals)) if vals else float("nan")
    if instances:
        tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
        metrics["instances"] = {
            "iou_threshold": IOU_THRESHOLD, "split_touching": split_touching,
            "precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn),
            "f1": ratio(2 * tp, 2 * tp + fp + fn), "tp": tp, "fp": fp, "fn": fn,
            "mean_image_f1": float(np.mean([r["instance_f1"] for r in rows])) if rows else 1.0}
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


def evaluate(model: Any, data: str | Path, split: str = "auto", format: str = "auto",
             run_dir: Path | None = None, tta: bool = False, tile: int | None = None,
             quiet: bool = True, hd95: bool = False, device: str | None = None,
             postprocess: Any = None, instances: bool = False, split_touching: bool = True,
             engine: str = "torch", precision: str = "auto") -> Evaluation:
    """Evaluate a loaded model on a data folder; see the module docstring for the semantics.

    `model` is a PyTorch model or an OnnxEngine; `engine="onnx"` runs a PyTorch model on
    onnxruntime (exported in memory). `precision` "auto" is float32 on every machine, so the
    metrics do not depend on the CPU; the JSON records the engine and precision used."""
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
    predictor = Predictor(model, device=device, tta=tta, tile=tile, engine=engine,
                          precision=precision, purpose="evaluate")
    result = evaluate_samples(predictor, samples, truth_mask_spec(mask_spec_of(model), spec),
                              quiet, hd95, postprocess, instances, split_touching)
    result.split = used
    return result
