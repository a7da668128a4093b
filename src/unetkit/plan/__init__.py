"""Self-configuring training: data fingerprint + hardware probe + budget -> plan.yaml.

    from unetkit.plan import make_plan, load_plan
    plan = make_plan("data/membrane", "10m")        # fingerprint, probe, decide
    plan.save("plan.yaml"); print(plan.summary())
    config = plan.to_fit_config(FitConfig(out="runs/x"))   # -> unetkit.train.fit.fit(config)
"""

from unetkit.plan.fingerprint import Fingerprint, compute_fingerprint
from unetkit.plan.planner import decide, make_plan
from unetkit.plan.probe import Measurements
from unetkit.plan.record import Decision, Plan, PlanHardwareWarning, load_plan

__all__ = ["Decision", "Fingerprint", "Measurements", "Plan", "PlanHardwareWarning",
           "compute_fingerprint", "decide", "load_plan", "make_plan"]
