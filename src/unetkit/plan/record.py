"""A plan: fingerprint + measurements + decisions (each with its reason), as plan.yaml.

`Plan.to_fit_config(base)` turns the decisions into a `FitConfig` (only fields FitConfig has);
`Plan.runtime` holds the choice FitConfig has no field for: the torch thread count
(`Plan.apply_runtime()` sets it). Predict-time TTA is not planned: on membrane it did not help
(README), so it stays the user's `--tta`.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from unetkit.config import FitConfig
from unetkit.errors import UsageError
from unetkit.plan.fingerprint import Fingerprint, describe, plain_types
from unetkit.plan.probe import Measurements

PLAN_VERSION = 1
# decisions that map onto FitConfig fields of the same name
FIT_FIELDS = ("model", "model_options", "scale", "size", "batch_size", "loss", "loss_options",
              "optimizer", "lr", "weight_decay", "scheduler", "augment", "epochs", "max_time",
              "val_split", "test_split", "precision", "devices", "rare_crops")
RUNTIME_FIELDS = ("threads",)


class PlanHardwareWarning(UserWarning):
    """A plan measured on other hardware is used here; its schedule may not fit the budget."""


@dataclass
class Decision:
    value: Any
    reason: str


@dataclass
class Plan:
    data: str
    format: str
    budget_s: float
    fingerprint: Fingerprint
    measurements: Measurements
    decisions: dict[str, Decision]
    estimates: dict[str, Any] = field(default_factory=dict)
    version: int = PLAN_VERSION
    hardware_note: str | None = None  # set by load_plan when the hardware differs

    def value(self, key: str, default: Any = None) -> Any:
        d = self.decisions.get(key)
        return default if d is None else d.value

    @property
    def runtime(self) -> dict[str, Any]:
        """Choices applied outside FitConfig: torch threads, TTA at predict time."""
        return {k: self.value(k) for k in RUNTIME_FIELDS if k in self.decisions}

    def fit_values(self) -> dict[str, Any]:
        """The FitConfig fields this plan sets (only fields FitConfig has)."""
        known = {f.name for f in dataclasses.fields(FitConfig)}
        return {k: self.decisions[k].value for k in FIT_FIELDS
                if k in self.decisions and k in known}

    def to_fit_config(self, base: FitConfig | None = None, keep: set[str] | frozenset = frozenset()
                      ) -> FitConfig:
        """`base` with the planned fields filled in; fields named in `keep` (e.g. the flags a
        user gave explicitly) stay as in `base`. `data`/`format` come from the plan if unset."""
        values = (base or FitConfig()).to_dict()
        own_model = "model" in keep and values.get("model") != self.value("model")
        for key, value in self.fit_values().items():
            if key in keep:
                continue
            if key in ("model_options", "loss_options") and isinstance(value, dict):
                if key == "model_options" and own_model:
                    continue  # the planned options belong to the planned model
                value = {**value, **(values.get(key) or {})}  # options given in base win
            values[key] = value
        if not values.get("data"):
            values["data"] = self.data
        if values.get("format", "auto") == "auto":
            values["format"] = self.format
        return FitConfig.from_dict(values)

    def apply_runtime(self) -> None:
        """Set torch's thread count to the one the plan measured fastest (CPU only)."""
        import torch

        threads = self.value("threads")
        if threads and self.measurements.machine.device == "cpu":
            torch.set_num_threads(int(threads))

    def to_dict(self) -> dict[str, Any]:
        return plain_types({
            "unetkit_plan": self.version, "data": self.data, "format": self.format,
            "budget_s": self.budget_s,
            "fit_config": self.fit_values(), "runtime": self.runtime,
            "decisions": {k: {"value": d.value, "reason": d.reason}
                          for k, d in self.decisions.items()},
            "estimates": self.estimates, "fingerprint": self.fingerprint.to_dict(),
            "measurements": self.measurements.to_dict()})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Plan:
        decisions = {k: Decision(v["value"], v["reason"]) for k, v in values["decisions"].items()}
        apply_hand_edits(decisions, values.get("fit_config") or {})
        return cls(data=values["data"], format=values.get("format", "auto"),
                   budget_s=float(values["budget_s"]),
                   fingerprint=Fingerprint.from_dict(values["fingerprint"]),
                   measurements=Measurements.from_dict(values["measurements"]),
                   decisions=decisions, estimates=values.get("estimates", {}),
                   version=int(values.get("unetkit_plan", PLAN_VERSION)))

    def save(self, path: str | Path) -> Path:
        from unetkit.io_utils import atomic_write_text

        path = Path(path)
        header = ("# unetkit plan: data fingerprint, measured speeds and every decision with its "
                  "reason.\n# Train with it: unetkit fit --plan " + path.name + "\n")
        atomic_write_text(path, header + yaml.safe_dump(self.to_dict(), sort_keys=False,
                                                        width=100))
        return path

    def summary(self) -> str:
        return format_summary(self)


def apply_hand_edits(decisions: dict[str, Decision], fit_config: dict[str, Any]) -> None:
    """A value changed by hand in plan.yaml's `fit_config` wins over the decision it was
    written from: the file says "edit and train with it", so an edit must not be ignored."""
    for key, value in fit_config.items():
        planned = decisions.get(key)
        if planned is not None and planned.value == value:
            continue
        was = "" if planned is None else f" (the plan chose {planned.value!r})"
        decisions[key] = Decision(value, f"set by hand in the plan file's fit_config{was}")


def load_plan(path: str | Path, warn: bool = True) -> Plan:
    """Read plan.yaml; warn (PlanHardwareWarning) when it was measured on other hardware."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"Plan file {path} does not exist.")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UsageError(f"Plan file {path} is not valid YAML ({exc}).") from exc
    if not isinstance(values, dict) or "decisions" not in values or "measurements" not in values:
        raise UsageError(f"{path} is not a unetkit plan (no decisions/measurements in it); make "
                         "one with `unetkit plan --data PATH`.")
    unknown = sorted(set(values.get("fit_config") or {}) - set(FIT_FIELDS))
    if unknown:
        raise UsageError(f"Plan file {path}: fit_config has {', '.join(unknown)}, which plans do "
                         f"not set (they set {', '.join(FIT_FIELDS)}); give other settings as "
                         "fit flags.")
    try:
        plan = Plan.from_dict(values)
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"Plan file {path} is damaged or from another unetkit version "
                         f"({exc}).") from exc
    plan.hardware_note = hardware_difference(plan.measurements)
    if plan.hardware_note and warn:
        warnings.warn(f"{path} {plan.hardware_note}", PlanHardwareWarning, stacklevel=2)
    return plan


def hardware_difference(m: Measurements) -> str | None:
    """One sentence on how this machine differs from the one the plan measured, or None."""
    from unetkit.plan.probe import machine_info

    here = machine_info(0)
    there = m.machine
    diffs = []
    if here.device != there.device or here.device_name != there.device_name:
        diffs.append(f"{there.device} '{there.device_name}' there vs {here.device} "
                     f"'{here.device_name}' here")
    if here.cores != there.cores:
        diffs.append(f"{there.cores} cores there vs {here.cores} here")
    if not diffs:
        return None
    return ("was measured on other hardware (" + "; ".join(diffs) + "), so its speeds and "
            "schedule may not fit the budget here; re-plan with `unetkit plan` for a fitted "
            "schedule.")


def fmt_s(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if s else f"{m}m"


def format_summary(plan: Plan) -> str:
    m = plan.measurements
    mc = m.machine
    est = plan.estimates
    out = [f"unetkit plan for {plan.data} ({plan.format}), budget {fmt_s(plan.budget_s)}", "",
           "Data"]
    out += [f"  {line}" for line in describe(plan.fingerprint)]
    out += ["", "Machine"]
    threads = ", ".join(f"{k} thread(s) {v:.2f} s/step" for k, v in m.threads_tested.items())
    out.append(f"  {mc.device} {mc.device_name}: {mc.cores} core(s), {mc.memory_available_gb:g} "
               f"GB free, precision {mc.precision}, torch {mc.torch}, {m.threads} thread(s)"
               + (f" ({threads})" if threads else ""))
    if mc.device == "cpu":
        out.append(f"  processes: {processes_line(m.processes_tested)}")
    out.append("  data pipeline: " + ", ".join(
        f"{v * 1000:.0f} ms/image " + ("extra for weight maps" if k == "weight_maps" else
                                       f"({k} augmentation)")
        for k, v in m.loader_s_per_image.items()))
    out.append("  pretrained encoders on disk: "
               + (", ".join(mc.pretrained_available) or "none"))
    for s in m.speeds:
        out.append(f"  {s.key:<22} {s.parameters / 1e6:6.2f}M params  {s.train_images_per_s:6.2f} "
                   f"train img/s at {s.size[0]}x{s.size[1]} (batch {s.batch})  "
                   f"{s.eval_s_per_image:.2f} s/image full-size forward")
    out += ["", "Decisions"]
    for key, d in plan.decisions.items():
        value = d.value
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "{}"
        elif isinstance(value, list):
            value = "x".join(str(v) for v in value) if key == "size" else str(value)
        elif value is None:
            value = "none"
        out.append(f"  {key:<13} {value}")
        out.append(f"  {'':<13}   {d.reason}")
    if est:
        out += ["", "Budget"]
        out.append(f"  {fmt_s(plan.budget_s)} = {fmt_s(est['planning_s'])} planning + "
                   f"{fmt_s(est['startup_s'])} start-up + {fmt_s(est['report_s'])} final "
                   f"evaluation + {fmt_s(est['margin_s'])} margin + "
                   f"{fmt_s(est['train_time_s'])} training")
        out.append(f"  training: about {est['epochs']} epochs of {est['epoch_s']:.1f}s "
                   f"({est['steps_per_epoch']} step(s) + validation of {est['val_images']} "
                   f"image(s)), {est['steps']} optimiser steps, "
                   f"{est['train_images_per_s']:.2f} images/s")
    return "\n".join(out)


def processes_line(p: dict[str, Any]) -> str:
    """The process probe's result in words (plan/probe_processes.py)."""
    if p.get("step_s"):
        return (f"{p['processes']} x {p['threads_each']} thread(s) (DDP) "
                f"{p['train_images_per_s']:.2f} train img/s, {p['batch_per_process']} patches "
                f"each, {p['startup_s']:.0f}s to start")
    return "not measured" + (f" ({p.get('skipped') or p.get('error')})" if p else "")


def print_summary(plan: Plan) -> None:
    print(plan.summary(), file=sys.stdout, flush=True)


__all__ = ["Decision", "Plan", "PlanHardwareWarning", "load_plan", "format_summary"]
