"""The one place that chains stages: a plain fit, cross-validation folds, a planned fit.

`train/` trains one model into one run directory; `plan/` writes a plan. This module decides
which of them run and in what order, so neither imports the other.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.config import FitConfig, parse_duration
from unetkit.data.formats import open_dataset
from unetkit.data.splits import load_splits, make_folds, make_splits, save_splits
from unetkit.errors import UsageError
from unetkit.io_utils import atomic_write_text, run_lock
from unetkit.models.artifact import load_model, save_model
from unetkit.models.ensemble import ensemble_of
from unetkit.progress import say
from unetkit.report.model_card import write_model_card
from unetkit.report.run_report import write_report
from unetkit.train.fit import FitResult, fit

METRIC_KEYS = ("mean_dice", "mean_iou", "pixel_accuracy", "dice", "iou")
# CLI flag -> FitConfig field, for "the user set this explicitly"
FLAG_FIELDS = {"option": "model_options", "class_weights": "loss_options",
               "format_option": "format_options", "encoder": "model_options",
               "encoder_weights": "model_options", "freeze_encoder": "model_options"}


def run_fit(config: FitConfig, quiet: bool = False, resume: bool = False) -> FitResult:
    """`fit` or `fit --resume`: K folds when the config asks for them, else one model."""
    if config.folds:
        return fit_folds(config, quiet, resume)
    return fit_and_report(config, quiet, resume)


def fit_and_report(config: FitConfig, quiet: bool = False, resume: bool = False,
                   splits: dict[str, list[str]] | None = None) -> FitResult:
    """Train one model, then score it at full size and draw the report (first process only)."""
    result = fit(config, quiet=quiet, resume=resume, splits=splits)
    if result.main and result.data is not None and result.splits is not None:
        result.metrics = write_report(result.run_dir, result.data, result.splits, quiet=quiet)
        if (result.run_dir / "model").is_dir():
            write_model_card(result.run_dir)  # model/README.md, from the report just written
    return result


def _fold_done(run: Path) -> bool:
    """A fold is finished once its report is written (what `fit_and_report` ends with)."""
    return (run / "report" / "summary.json").is_file() and (run / "model").is_dir()


def fit_folds(config: FitConfig, quiet: bool = False, resume: bool = False) -> FitResult:
    """`fit --folds K`: K models on K grouped/stratified splits, saved as one ensemble.

    With `resume`, finished folds are kept, the unfinished one continues from its last
    checkpoint and the rest train; the ensemble is then rebuilt from all K. The parent run
    directory is locked for the whole run, as `fit` locks each fold's.
    """
    out = Path(config.out)
    with run_lock(out, "model", "report"):
        return _fit_folds_locked(config, out, quiet, resume)


def _fit_folds_locked(config: FitConfig, out: Path, quiet: bool, resume: bool) -> FitResult:
    splits_path = out / "splits.json"
    if resume and splits_path.is_file():
        saved = load_splits(splits_path)
        pool, test, folds = saved["train"], saved.get("test", []), saved["folds"]
    else:
        samples = open_dataset(config.data, config.format, **config.format_options).samples
        test = make_splits(samples, 0.0, config.test_split, config.seed)["test"] \
            if config.test_split > 0 else []
        kept = [s for s in samples if s.name not in set(test)]
        folds = make_folds(kept, int(config.folds), config.seed)
        pool = [s.name for s in kept]
        out.mkdir(parents=True, exist_ok=True)
        save_splits({"train": pool, "val": [], "test": test, "folds": folds}, splits_path)
        config.save(out / "config.yaml")
    results = []
    for k, val in enumerate(folds):
        child_dir = out / f"fold_{k}"
        if resume and _fold_done(child_dir):
            say(f"fold {k + 1}/{len(folds)}: finished earlier, kept", quiet)
            results.append(FitResult(child_dir, json.loads(
                (child_dir / "report" / "summary.json").read_text())))
            continue
        say(f"fold {k + 1}/{len(folds)}: {len(val)} validation images", quiet)
        child = dataclasses.replace(config, folds=None, out=str(child_dir))
        train = [n for n in pool if n not in set(val)]
        again = resume and (child_dir / "checkpoints" / "last.ckpt").is_file()
        if again and (child_dir / "config.yaml").is_file():  # as resolved when it started
            child = dataclasses.replace(FitConfig.load(child_dir / "config.yaml"),
                                        out=str(child_dir))
        results.append(fit_and_report(child, quiet, again,
                                      {"train": train, "val": val, "test": test}))
    members = [load_model(out / f"fold_{k}") for k in range(len(folds))]
    save_model(ensemble_of(members), out / "model",
               {**{k: v for k, v in members[0].unetkit_meta.items()  # a fold's own T
                   if k not in ("temperature", "calibration")}, "folds": len(folds)})
    summary = fold_summary([r.metrics for r in results])
    atomic_write_text(out / "report" / "summary.json", json.dumps(summary, indent=1))
    write_model_card(out)  # the ensemble's card, with the folds' mean metrics
    say(f"Cross-validation over {len(folds)} folds: mean Dice "
         f"{summary.get('mean_dice', float('nan')):.4f} ± "
         f"{summary.get('mean_dice_std', float('nan')):.4f}; ensemble in {out / 'model'}", quiet)
    return FitResult(out, summary)


def fold_summary(per_fold: list[dict[str, Any]]) -> dict[str, Any]:
    """Each fold's metrics, and the mean and spread of the headline ones."""
    summary: dict[str, Any] = {"folds": per_fold}
    for key in METRIC_KEYS:
        values = [m[key] for m in per_fold if key in m]
        if values:
            summary[key] = float(np.mean(values))
            summary[f"{key}_std"] = float(np.std(values))
    return summary


def fit_planned(config: FitConfig, budget: str | None, plan_path: Path | None,
                keep: set[str], quiet: bool = False) -> FitResult:
    """`fit --auto` / `fit --plan`: plan (or load a plan), then train in what is left of
    the wall-clock budget. `keep` names the flags the user gave explicitly; they win."""
    from unetkit.plan import load_plan, make_plan

    start = time.monotonic()
    keep = {FLAG_FIELDS.get(k, k) for k in keep}
    fixed = {k: getattr(config, k) for k in ("loss", "augment") if k in keep}
    if plan_path is not None and not budget:
        plan = load_plan(plan_path)
    else:
        budget_s = parse_duration(budget or config.max_time, "--budget" if budget else "--max-time")
        if not budget_s:
            raise UsageError("--auto needs --budget, e.g. --budget 10m (planning included).")
        # with --plan and a new budget: refit the schedule from the recorded speeds
        plan = make_plan(config.data, budget_s, config.format, probe=plan_path, quiet=quiet,
                         skip_bad=config.skip_bad, fixed=fixed or None,
                         **config.format_options)
    planned = plan.to_fit_config(config, keep=keep)
    if time.monotonic() - start >= plan.budget_s:
        raise UsageError(f"Planning used the whole budget of {plan.budget_s:.0f}s; give a "
                         "larger --budget.")
    plan.apply_runtime()
    out = Path(planned.out)
    out.mkdir(parents=True, exist_ok=True)
    plan.save(out / "plan.yaml")
    say(plan.summary(), quiet)
    return run_fit(planned, quiet=quiet)

