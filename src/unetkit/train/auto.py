"""`fit --auto --budget T` and `fit --plan plan.yaml`: plan, then train to the plan in time."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from unetkit.config import FitConfig, parse_duration
from unetkit.errors import UsageError


def fit_planned(config: FitConfig, budget: str | None, plan_path: Path | None,
                keep: set[str], quiet: bool = False) -> Any:
    """Plan (or load a plan), then train within what is left of the wall-clock budget.

    `keep` names the flags the user gave explicitly; they win over the plan.
    """
    from unetkit.plan import load_plan, make_plan
    from unetkit.train.fit import fit

    start = time.monotonic()
    if plan_path is not None:
        plan = load_plan(plan_path)
        budget_s = parse_duration(budget) if budget else plan.budget_s
    else:
        budget_s = parse_duration(budget or config.max_time)
        if not budget_s:
            raise UsageError("--auto needs --budget, e.g. --budget 10m (planning included).")
        plan = make_plan(config.data, budget_s, config.format, quiet=quiet,
                         skip_bad=config.skip_bad, **config.format_options)
    planned = plan.to_fit_config(config, keep=keep)
    remaining = budget_s - (time.monotonic() - start)
    if remaining <= 0:
        raise UsageError(f"Planning used the whole budget of {budget_s:.0f}s; give a larger "
                         "--budget.")
    planned.max_time = f"{int(remaining)}s"
    plan.apply_runtime()
    out = Path(planned.out)
    out.mkdir(parents=True, exist_ok=True)
    plan.save(out / "plan.yaml")
    if not quiet:
        print(plan.summary(), file=sys.stderr)
        print(f"training for the remaining {remaining:.0f}s of the budget", file=sys.stderr)
    return fit(planned, quiet=quiet)
