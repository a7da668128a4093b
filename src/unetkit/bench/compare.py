"""`unetkit bench quality --compare`: `fit --auto` against the fixed defaults, same budget.

Both runs are real `unetkit fit` processes started side by side, each pinned to its own
half of the cores, so they see the same machine load; the defaults run is told the validation split
the plan chose, so both are scored on the same held-out images (checked, and reported).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from unetkit.errors import UnetkitError, UsageError

SCORE_KEYS = ("dice", "mean_dice_foreground", "pixel_accuracy", "mean_dice", "mean_iou")


def _launch(args: list[str], log: Path, cores: list[int]) -> subprocess.Popen:
    """A `unetkit` process pinned to `cores`: its planner then sees (and probes) only its
    own share of the machine, not the cores the other run is about to use."""
    env = dict(os.environ, OMP_NUM_THREADS=str(len(cores)))
    pin = (lambda: os.sched_setaffinity(0, cores)) if hasattr(os, "sched_setaffinity") \
        else None
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, "-m", "unetkit", *args], stdout=f,
                                stderr=subprocess.STDOUT, env=env, preexec_fn=pin)


def _halves(threads: int | None) -> tuple[list[int], list[int]]:
    """Two disjoint sets of `threads` usable cores (default: half of them each)."""
    from unetkit.train.parallel import usable_core_ids

    usable = usable_core_ids()  # not on Linux: no pinning (_launch), only the thread counts
    n = threads or max(1, len(usable) // 2)
    if 2 * n > len(usable):
        raise UsageError(f"Comparing with {n} core(s) each needs {2 * n}; {len(usable)} are "
                         "usable.")
    return usable[:n], usable[n:2 * n]


def _wait_for_plan(run: Path, proc: subprocess.Popen, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    plan = run / "plan.yaml"
    while not plan.is_file():
        if proc.poll() is not None:
            raise UnetkitError(f"fit --auto stopped before writing {plan}; see "
                               f"{run.parent / 'auto.log'}.")
        if time.monotonic() > deadline:
            raise UnetkitError(f"fit --auto wrote no {plan} within {timeout_s:.0f}s.")
        time.sleep(1)
    time.sleep(0.5)  # written atomically, but give the file system a moment
    return yaml.safe_load(plan.read_text()) or {}


def _scores(run: Path, log: Path) -> dict[str, Any]:
    summary = run / "report" / "summary.json"
    if not summary.is_file():
        raise UnetkitError(f"{run} has no report/summary.json; see {log}.")
    metrics = json.loads(summary.read_text())
    val = json.loads((run / "splits.json").read_text()).get("val", [])
    config = yaml.safe_load((run / "config.yaml").read_text()) or {}
    return {"scores": {k: metrics[k] for k in SCORE_KEYS if k in metrics}, "val_images": val,
            "settings": {k: config.get(k) for k in ("model", "model_options", "size",
                                                     "batch_size", "loss", "lr", "augment")}}


def run_compare(data: str | Path, budget: str, out: str | Path, threads: int | None = None,
                extra: list[str] | None = None) -> dict[str, Any]:
    """Train defaults and --auto side by side within `budget`; return both scores."""
    from unetkit.config import parse_duration

    budget_s = parse_duration(budget, "--budget")
    if not budget_s or budget_s <= 0:
        raise UsageError(f"--budget {budget!r} must be a positive duration such as 5m.")
    if not Path(data).exists():
        raise UsageError(f"--data {data} does not exist.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    auto_cores, default_cores = _halves(threads)
    threads = len(auto_cores)
    common = ["--data", str(data), *(extra or [])]
    auto_run, default_run = out / "auto", out / "defaults"
    auto = _launch(["fit", *common, "--auto", "--budget", budget, "--out", str(auto_run)],
                   out / "auto.log", auto_cores)
    procs = [auto]
    try:
        plan = _wait_for_plan(auto_run, auto, timeout_s=budget_s)
        val_split = (plan.get("decisions", {}).get("val_split") or {}).get("value", 0.2)
        procs.append(_launch(["fit", *common, "--max-time", budget, "--val-split",
                              str(val_split), "--out", str(default_run)],
                             out / "defaults.log", default_cores))
        for proc in procs:
            proc.wait()
    finally:  # an error or Ctrl-C here must not leave training processes behind
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    result = {"data": str(data), "budget": budget, "threads_each": threads,
              "val_split": val_split,
              "auto": _scores(auto_run, out / "auto.log"),
              "defaults": _scores(default_run, out / "defaults.log")}
    result["same_val_images"] = (sorted(result["auto"]["val_images"])
                                 == sorted(result["defaults"]["val_images"]))
    key = next(k for k in ("dice", "mean_dice_foreground") if k in result["auto"]["scores"])
    result["metric"] = key
    result["gain"] = result["auto"]["scores"][key] - result["defaults"]["scores"][key]
    return result


def format_compare(result: dict[str, Any]) -> str:
    key = result["metric"]
    a, d = result["auto"]["scores"], result["defaults"]["scores"]
    same = "the same" if result["same_val_images"] else "DIFFERENT"
    nan = float("nan")
    return "\n".join([
        f"unetkit bench quality --compare — {result['data']}, budget {result['budget']}, "
        f"{result['threads_each']} thread(s) each, {same} "
        f"{len(result['auto']['val_images'])} validation images",
        f"{'':>10}{key:>22}{'pixel accuracy':>16}{'mean IoU':>10}",
        *(f"{name:>10}{s[key]:>22.4f}{s.get('pixel_accuracy', nan):>16.4f}"
          f"{s.get('mean_iou', nan):>10.4f}" for name, s in (("defaults", d), ("--auto", a))),
        f"gain {result['gain']:+.4f}"])
