"""After training: honest validation metrics at full size, curves and prediction pictures.

Called by the pipeline once `fit` has written the run directory (train/ never imports it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from unetkit.data.loading import read_mask, read_sample_image
from unetkit.data.prepare import PreparedData
from unetkit.infer.calibration import plot_reliability
from unetkit.infer.evaluate import evaluate_samples, write_per_image
from unetkit.infer.predict import Predictor
from unetkit.io_utils import atomic_write_text
from unetkit.models.artifact import load_model
from unetkit.report.figures import (
    never_predicted_flags,
    plot_confusion,
    plot_curves,
    plot_predictions,
)

SHOWN = 4


def write_report(out: Path, data: PreparedData, splits: dict[str, list[str]],
                 quiet: bool = False) -> dict[str, Any]:
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    if (out / "metrics.csv").is_file():
        plot_curves(out / "metrics.csv", report / "curves.png")
    if not (out / "model").is_dir():
        return {}
    model = load_model(out)
    wanted = set(splits.get("val") or splits.get("train", []))
    samples = [s for s in data.spec.samples if s.name in wanted]
    predictor = Predictor(model, purpose="evaluate")  # float32: the same on every machine
    result = evaluate_samples(predictor, samples, data.mask, quiet=True)
    metrics = {"split": "val", **result.metrics,
               "best_epoch": model.unetkit_meta.get("best_epoch")}
    if model.unetkit_meta.get("calibration"):  # fit's temperature scaling: ECE before/after
        metrics["calibration"]["fitted"] = model.unetkit_meta["calibration"]
    write_pictures(metrics, report)
    atomic_write_text(report / "summary.json", json.dumps(metrics, indent=1))
    write_per_image(result.per_image, report / "per_image.csv")
    ranked = sorted(zip(result.per_image, samples, strict=True), key=lambda r: r[0]["dice"])
    half = SHOWN // 2
    chosen = ranked[-half:][::-1] + ranked[:half] if len(ranked) > SHOWN else ranked[::-1]
    items = []
    for row, s in chosen:
        image = read_sample_image(s)
        items.append((s.name, image, read_mask(s, data.mask), predictor.predict(image),
                      row["dice"]))
    plot_predictions(items, model.unetkit_meta["class_names"], report / "predictions.png")
    if not quiet:
        print_metrics(metrics, f"Validation metrics ({metrics['images']} images, full size)")
        print(f"Report: {report}/ (curves.png, predictions.png, confusion.png, reliability.png, "
              "summary.json)",
              file=sys.stderr)
    return metrics


def write_pictures(metrics: dict[str, Any], folder: Path) -> None:
    """The pictures of a metrics JSON: reliability diagram and confusion matrix."""
    plot_reliability(metrics["calibration"], folder / "reliability.png")
    if metrics.get("confusion"):
        plot_confusion(metrics["confusion"], list(metrics["per_class"]),
                       folder / "confusion.png")


def print_metrics(metrics: dict[str, Any], title: str) -> None:
    lines = [title]
    for key in ("dice", "iou", "mean_dice", "mean_iou", "pixel_accuracy"):
        if key in metrics:
            lines.append(f"  {key:<15} {metrics[key]:.4f}")
    calibration = metrics.get("calibration") or {}
    if calibration.get("ece") is not None:
        lines.append(f"  {'ece':<15} {calibration['ece']:.4f}")
    per_class = metrics.get("per_class", {})
    if per_class:
        never = never_predicted(metrics)
        lines.append(f"  {'class':<15} {'dice':>7} {'iou':>7}")
        for name, v in per_class.items():
            lines.append(f"  {name:<15} {v['dice']:>7.4f} {v['iou']:>7.4f}"
                         + ("  never predicted" if name in never else ""))
    print("\n".join(lines), file=sys.stderr)


def never_predicted(metrics: dict[str, Any]) -> list[str]:
    """Classes present in the truth that the model predicted on no pixel at all."""
    conf = metrics.get("confusion")
    if not conf:
        return []
    names = list(metrics.get("per_class", {}))
    return [n for n, never in zip(names, never_predicted_flags(conf), strict=True) if never]
