"""`unetkit bench quality`: validation Dice against wall time for the default `fit`.

Trains `unetkit.pipeline.run_fit(FitConfig(data=..., max_time=budget, out=tmpdir))` with every
other setting at its default, reads the run's metrics.csv (one row per epoch: `elapsed_s`
and `val/dice`, or `val/mean_dice` for multi-class data) and reports the curve as JSON and
as a plot (bench_quality.png in the output folder).
"""

from __future__ import annotations

import contextlib
import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from unetkit.errors import UsageError

PLOT_NAME = "bench_quality.png"


def default_data() -> Path | None:
    """../shared/data/membrane beside the repository (or the working directory)."""
    here = Path(__file__).resolve()
    candidates = [Path.cwd().parent / "shared" / "data" / "membrane",
                  here.parents[3].parent / "shared" / "data" / "membrane"]
    return next((p for p in candidates if p.is_dir()), None)


def read_curve(metrics_csv: Path) -> tuple[str, list[dict[str, float]]]:
    """(metric column, [{"epoch", "elapsed_s", "dice"}]) from a run's metrics.csv."""
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return "val/dice", []
    column = "val/dice" if "val/dice" in rows[0] else "val/mean_dice"
    points = []
    for row in rows:
        try:
            points.append({"epoch": int(float(row.get("epoch", len(points)))),
                           "elapsed_s": float(row["elapsed_s"]), "dice": float(row[column])})
        except (KeyError, TypeError, ValueError):
            continue
    return column, points


def summarize(column: str, points: list[dict[str, float]]) -> dict[str, Any]:
    best = max(points, key=lambda p: p["dice"]) if points else None
    out: dict[str, Any] = {"metric": column, "epochs": len(points),
                           "final_dice": points[-1]["dice"] if points else None,
                           "best_dice": best["dice"] if best else None,
                           "best_at_s": best["elapsed_s"] if best else None}
    if best:
        for frac in (0.9, 0.95):  # time to get within 10% / 5% of the best
            hit = next(p for p in points if p["dice"] >= frac * best["dice"])
            out[f"time_to_{int(frac * 100)}pct_of_best_s"] = hit["elapsed_s"]
    out["curve"] = points
    return out


def plot_curve(points: list[dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot([p["elapsed_s"] / 60 for p in points], [p["dice"] for p in points], marker="o",
            markersize=3)
    ax.set_xlabel("wall time (min)")
    ax.set_ylabel("validation Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def run_quality(budget: str = "5m", data: str | Path | None = None,
                out: str | Path = "runs/bench", quiet: bool = False,
                keep_run: bool = False, auto: bool = False,
                format_options: dict[str, object] | None = None) -> dict[str, Any]:
    """Train the default configuration (or `fit --auto`'s plan) within `budget`; return the
    Dice-vs-time summary."""
    import torch

    from unetkit.config import FitConfig, parse_duration
    from unetkit.pipeline import run_fit

    seconds = parse_duration(budget, "--budget")
    if not seconds or seconds <= 0:
        raise UsageError(f"--budget {budget!r} must be a positive duration such as 5m.")
    if data is None:
        found = default_data()
        if found is None:
            raise UsageError("No data for the quality bench: ../shared/data/membrane is not "
                             "on this machine, so pass --data PATH.")
        data = found
    data = Path(data)
    if not data.exists():
        raise UsageError(f"--data {data} does not exist.")
    out = Path(out)
    tmp = Path(tempfile.mkdtemp(prefix="unetkit-bench-quality-"))
    start = time.perf_counter()
    try:
        # fit's progress bar writes to stdout; keep stdout for the JSON
        with contextlib.redirect_stdout(sys.stderr):
            config = FitConfig(data=str(data), max_time=budget, out=str(tmp / "run"),
                               format_options=dict(format_options or {}))
            if auto:
                from unetkit.pipeline import fit_planned

                run = fit_planned(config, budget, None, keep=set(), quiet=quiet)
            else:
                run = run_fit(config, quiet=quiet)
        wall = time.perf_counter() - start
        column, points = read_curve(run.run_dir / "metrics.csv")
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run.run_dir / "metrics.csv", out / "bench_quality_metrics.csv")
        config_text = (run.run_dir / "config.yaml").read_text()
        if keep_run:
            shutil.copytree(run.run_dir, out / "bench_quality_run", dirs_exist_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = summarize(column, points)
    plot = out / PLOT_NAME
    if points:
        how = "fit --auto" if auto else "unetkit fit defaults"
        plot_curve(points, plot, f"{how} on {data.name}, budget {budget}")
    import yaml

    resolved = yaml.safe_load(config_text) or {}
    return {"data": str(data), "budget": budget, "budget_s": seconds, "wall_s": round(wall, 1),
            "config": "auto" if auto else "defaults",
            **summary, "plot": str(plot) if points else None,
            "final_metrics": run.metrics,
            "settings": {k: resolved.get(k) for k in ("model", "model_options", "size",
                                                      "batch_size", "precision", "loss",
                                                      "optimizer", "lr", "scheduler")}
            | {"threads": torch.get_num_threads(), "device": "cuda" if
               torch.cuda.is_available() else "cpu"}}


def format_quality(result: dict[str, Any]) -> str:
    lines = [f"unetkit bench quality — {result['data']}, budget {result['budget']} "
             f"({result['epochs']} epochs in {result['wall_s']} s wall)",
             f"{'epoch':>6}{'elapsed s':>11}{'val Dice':>10}"]
    for p in result["curve"]:
        lines.append(f"{p['epoch']:>6}{p['elapsed_s']:>11.1f}{p['dice']:>10.4f}")
    if result["best_dice"] is not None:
        lines.append(f"best {result['metric']} {result['best_dice']:.4f} at "
                     f"{result['best_at_s']:.0f} s; final {result['final_dice']:.4f}")
    if result.get("plot"):
        lines.append(f"plot: {result['plot']}")
    return "\n".join(lines)
