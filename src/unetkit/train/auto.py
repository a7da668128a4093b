"""`fit --auto --budget T` and `fit --plan plan.yaml`: plan, then train to the plan in time."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from unetkit.config import FitConfig, parse_duration
from unetkit.errors import UsageError

# CLI flag -> FitConfig field, for "the user set this explicitly"
FLAG_FIELDS = {"option": "model_options", "class_weights": "loss_options",
               "format_option": "format_options", "encoder": "model_options",
               "encoder_weights": "model_options", "freeze_encoder": "model_options"}


def fit_planned(config: FitConfig, budget: str | None, plan_path: Path | None,
                keep: set[str], quiet: bool = False) -> Any:
    """Plan (or load a plan), then train within what is left of the wall-clock budget.

    `keep` names the flags the user gave explicitly; they win over the plan.
    """
    from unetkit.plan import load_plan, make_plan
    from unetkit.train.fit import fit

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
    if not quiet:
        print(plan.summary(), file=sys.stderr)
    return fit(planned, quiet=quiet)
