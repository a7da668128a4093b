"""`fit --folds K`: K models on K grouped/stratified splits, saved as one ensemble artifact."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.config import FitConfig
from unetkit.data.formats import open_dataset
from unetkit.data.splits import make_folds, make_splits, save_splits
from unetkit.io_utils import atomic_write_text
from unetkit.models.artifact import load_model, save_model
from unetkit.models.ensemble import ensemble_of

METRIC_KEYS = ("mean_dice", "mean_iou", "pixel_accuracy", "dice", "iou")


def fit_folds(config: FitConfig, quiet: bool = False) -> Any:
    from unetkit.train.fit import FitResult, fit

    out = Path(config.out)
    spec = open_dataset(config.data, config.format, **config.format_options)
    samples = spec.samples
    test: list[str] = []
    if config.test_split > 0:
        test = make_splits(samples, 0.0, config.test_split, config.seed)["test"]
    pool = [s for s in samples if s.name not in set(test)]
    folds = make_folds(pool, int(config.folds), config.seed)
    out.mkdir(parents=True, exist_ok=True)
    save_splits({"train": [s.name for s in pool], "val": [], "test": test, "folds": folds},
                out / "splits.json")
    config.save(out / "config.yaml")
    results = []
    for k, val in enumerate(folds):
        if not quiet:
            print(f"fold {k + 1}/{len(folds)}: {len(val)} validation images", file=sys.stderr)
        child = dataclasses.replace(config, folds=None, out=str(out / f"fold_{k}"))
        train = [s.name for s in pool if s.name not in set(val)]
        results.append(fit(child, quiet=quiet, splits={"train": train, "val": val, "test": test}))
    members = [load_model(out / f"fold_{k}") for k in range(len(folds))]
    ensemble = ensemble_of(members)
    meta = {**members[0].unetkit_meta, "folds": len(folds)}
    save_model(ensemble, out / "model", meta)
    summary: dict[str, Any] = {"folds": [r.metrics for r in results]}
    for key in METRIC_KEYS:
        values = [r.metrics[key] for r in results if key in r.metrics]
        if values:
            summary[key] = float(np.mean(values))
            summary[f"{key}_std"] = float(np.std(values))
    atomic_write_text(out / "report" / "summary.json", json.dumps(summary, indent=1))
    if not quiet:
        print(f"Cross-validation over {len(folds)} folds: mean Dice "
              f"{summary.get('mean_dice', float('nan')):.4f} ± "
              f"{summary.get('mean_dice_std', float('nan')):.4f}; ensemble in {out / 'model'}",
              file=sys.stderr)
    return FitResult(out, summary)
