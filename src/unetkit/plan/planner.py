"""Decisions: data fingerprint + measured speeds + time budget -> a training plan.

`decide(fingerprint, measurements, budget_s)` is a pure function: the same fingerprint,
measurements and budget always give the same plan, so a plan replays from the measurements
recorded in plan.yaml (`make_plan(..., probe=load_plan("plan.yaml"))`).

The rules, in order:

1. Data (from the fingerprint alone): image scale (thin structures are never downscaled;
   blobs may be, when objects are large and images big), patch size (the images' own size up to
   256 px on CPU / 512 px on GPU), batch size (about 4 / 16 patch-256 equivalents per step),
   depth, validation split (at least one image; capped at ~50 images for large sets).
2. Candidates: batch-norm U-Nets of increasing width (8/16/32 filters on CPU, 16/32/64 on GPU;
   with the space-to-depth stem and no dropout where fit's defaults would add them, and then
   8/16 only),
   plus pretrained-encoder U-Nets only when their ImageNet weights are on disk and the images are
   RGB without thin structures; each is probed (timed) cheapest first (model_choice.py).
3. Budget (budget.py): training time = budget - planning - start-up - final evaluation - margin.
   An epoch costs its training steps (measured step time + measured data-pipeline time per
   image) plus full-size validation (measured forward time) plus checkpoint saves.
4. Model: the widest candidate that still gets TARGET_STEPS optimiser steps in the training
   time; else the fastest, with the batch cut (down to MIN_BATCH) so it gets closer to
   TARGET_STEPS steps. Fewer than MIN_STEPS steps with the fastest -> the budget is too
   small (UsageError naming the budget that would do). The choice: model_choice.py.
5. Augmentation strong for small data sets (<= 100 training images) when the schedule makes
   enough passes over the data to benefit; loss bce-dice / ce-dice (Dice for the overlap
   metric and rare classes, plus square-root median-frequency class weights below 10 %); the
   U-Net paper's border weight maps (weighted-ce) are wired for objects parted by thin borders
   but off (data_decisions.WEIGHT_MAPS_FOR_SEPARATED: lower Dice in short budgets), and a user
   can pin them with fixed={"loss": "weighted-ce"} (their data cost is measured and budgeted);
   AdamW with one-cycle, whose progress follows wall time so it anneals by the deadline;
   no epoch cap (the time limit ends training, however fast the epochs turn out).
   Predict-time TTA is not planned (it stays the user's --tta).
6. Scenes (upright multi-class RGB images, data_decisions.scenes; measured on CamVid, see
   docs/decisions.md): whole frames at 192 px on the long side, batch 8 (4 when 8 would
   get fewer than SCENE_BATCH_STEPS optimiser steps, as on a slow CPU), natural
   augmentation, median-frequency weights (20 for thin classes left under 2 px), and a
   from-scratch ResNet-10-T U-Net candidate with a decoder half as wide as smp's, chosen when
   it gets TARGET_STEPS steps; threads and processes are measured on it.

An epoch is what `fit` runs: about one image-area of patches per training image
(`ceil(train area / patch area)` samples, drop_last) and then full-size validation.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from unetkit.config import parse_duration
from unetkit.device import BF16_ENV, bf16_forced
from unetkit.errors import UsageError
from unetkit.plan.budget import MIN_STEPS, fixed_costs, nice_duration
from unetkit.plan.cpu_layout import Layout, choose_layout, layout_batch, processes_to_probe
from unetkit.plan.data_decisions import data_decisions, loss_decisions, scenes
from unetkit.plan.fingerprint import Fingerprint, compute_fingerprint
from unetkit.plan.model_choice import (
    SCENE_KEY,
    TARGET_STEPS,
    candidates,
    choose_model,
    decoder_why,
    from_scratch,
    worth_probing,
)
from unetkit.plan.probe import Candidate, Measurements, machine_info, probe_hardware
from unetkit.plan.record import Decision, Plan, fmt_s, load_plan
from unetkit.progress import say
from unetkit.train.defaults import auto_scale

MIN_BATCH = 4  # smallest batch the planner trades for more steps (batch-norm statistics)
SMALL_DATA = 100  # training images at or below which strong augmentation is considered
# the measurements behind the next rule are in docs/decisions.md
STRONG_MIN_EPOCHS = 1000  # above every pass count measured on CPU, where strong always lost
# fewer planned steps than this at the scenes' 8 frames per step: 4 per step instead (CamVid,
# docs/decisions.md: 4 won by 0.046 mean IoU at 447 steps of 8, a wash at about 690)
SCENE_BATCH_STEPS = 600


def _precision_why(precision: str) -> str:
    if "bf16" in precision:
        return "native bf16 on this hardware"
    if precision != "32":
        return "mixed precision on GPU"
    if bf16_forced() is False:
        return f"full precision: bf16 switched off ({BF16_ENV}=0)"
    return "full precision: no native bf16 on this CPU"


def first_augment(fp: Fingerprint, n_train: int) -> str:
    """natural for upright scenes, strong for small data sets, else default (the planner
    may still trade strong for default when too few passes fit)."""
    if scenes(fp):
        return "natural"
    return "strong" if n_train <= SMALL_DATA else "default"


# ------------------------------------------------------------------------------ decisions ---

def _plan_layout(m: Measurements, dd: dict[str, Decision], augment: str,
                 budget: float) -> Layout:
    """Threads or processes on CPU (cpu_layout.py), recorded in `dd` for the budget."""
    fixed = fixed_costs(m, m.speeds[0], dd["_n_val"].value, budget)
    layout = choose_layout(m, dd["batch_size"].value, augment, budget - sum(fixed.values()))
    dd["_layout"] = Decision(layout, "")
    _even_batch(dd, layout)
    return layout


def _even_batch(dd: dict[str, Decision], layout: Layout) -> None:
    """Round the planned batch down to split evenly over the layout's processes."""
    batch = dd["batch_size"].value
    even = layout_batch(batch, layout)
    if even != batch:
        dd["batch_size"] = Decision(even, f"{dd['batch_size'].reason}; {even}, to split "
                                    f"evenly over {layout.devices} processes")


def _trade_batch_for_steps(speed: Any, sched: dict[str, Any], dd: dict[str, Decision],
                           layout: Layout) -> bool:
    """Cut the batch when the chosen model would get too few optimiser steps: any model
    under TARGET_STEPS (in proportion, down to MIN_BATCH), the scene encoder under
    SCENE_BATCH_STEPS (halved). True when the batch changed, so the model is chosen again."""
    batch, steps = dd["batch_size"].value, sched["steps"]
    if batch <= MIN_BATCH:
        return False
    if steps < TARGET_STEPS:
        new = max(MIN_BATCH, int(batch * steps / TARGET_STEPS))
        why = (f"{batch} would leave only {steps} optimiser steps in the budget; a short "
               f"budget needs updates more than large batches, so {new} (at least {MIN_BATCH} "
               "for batch norm)")
    elif speed.key == SCENE_KEY and steps < SCENE_BATCH_STEPS:
        new = max(MIN_BATCH, batch // 2)
        why = (f"{batch} frames per step would leave only {steps} optimiser steps (under "
               f"{SCENE_BATCH_STEPS}); on street scenes half the frames per step and twice the "
               "steps learned more in that regime (docs/decisions.md), so "
               f"{new} (at least {MIN_BATCH} for batch norm)")
    else:
        return False
    dd["batch_size"] = Decision(new, why)
    _even_batch(dd, layout)
    return True


def _optimisation_decisions(speed: Any, sched: dict[str, Any], budget: float,
                            m: Measurements, layout: Layout | None = None
                            ) -> dict[str, Decision]:
    """Optimiser, rate, schedule, epoch cap and time limit, precision, threads, processes."""
    d: dict[str, Decision] = {}
    opts = dict(speed.options)
    pretrained = not from_scratch(speed)
    lr = 3e-4 if pretrained and not opts.get("freeze_encoder") else 1e-3
    d["optimizer"] = Decision("adamw", "AdamW: robust without tuning for U-Nets")
    d["lr"] = Decision(lr, "peak of the one-cycle schedule; 1e-3 suits batch-norm U-Nets"
                       if lr == 1e-3 else "lower peak so fine-tuning keeps the pretrained "
                       "features")
    d["weight_decay"] = Decision(1e-4, "light regularisation")
    d["scheduler"] = Decision("onecycle", "warm-up then cosine annealing; its progress follows "
                              "wall time, so the rate reaches its minimum at the deadline")
    d["epochs"] = Decision(None, f"no cap: the time limit ends training (~{sched['epochs']} "
                           f"epochs of {sched['epoch_s']:.1f}s fit the "
                           f"{fmt_s(sched['train_time_s'])} training time; a cap stopped runs "
                           "that went faster than the probe after 3/4 of their budget)")
    d["max_time"] = Decision(f"{int(sched['train_time_s'])}s",
                             f"the {fmt_s(budget)} budget minus planning "
                             f"({fmt_s(sched['planning_s'])}), start-up "
                             f"({fmt_s(sched['startup_s'])}), final evaluation "
                             f"({fmt_s(sched['report_s'])}) and a 5 % margin")
    d["precision"] = Decision(m.machine.precision, _precision_why(m.machine.precision))
    d["threads"] = Decision(m.threads, "fastest thread count measured ("
                            + ", ".join(f"{k}: {v:.2f} s/step" for k, v in
                                        m.threads_tested.items()) + ")" if m.threads_tested
                            else "torch's default for this machine")
    if layout is not None and m.machine.device == "cpu":
        d["devices"] = Decision(layout.devices, layout.reason)
    return d


def _checked_inputs(m: Measurements, budget_s: float | str, fixed: dict[str, Any] | None
                    ) -> tuple[float, dict[str, Any]]:
    """The budget in seconds and the pinned decisions, refusing what cannot be planned."""
    budget = float(parse_duration(budget_s, "--budget") if isinstance(budget_s, str) else budget_s)
    fixed = dict(fixed or {})
    unknown = sorted(set(fixed) - {"loss", "augment"})
    if unknown:
        raise UsageError(f"A plan can be fixed only in loss and augment, not {unknown}.")
    if not m.speeds:
        raise UsageError("The measurements hold no model speeds; run `unetkit plan` to probe.")
    return budget, fixed


def decide(fp: Fingerprint, m: Measurements, budget_s: float | str, data: str | None = None,
           format: str = "auto", fixed: dict[str, Any] | None = None) -> Plan:
    """The plan for this data, these measurements and this budget (a pure function).

    `fixed` pins decisions the user made ("loss", "augment"); the rest adapt to them.
    """
    budget, fixed = _checked_inputs(m, budget_s, fixed)
    dd = data_decisions(fp, m.machine.device)
    ld = loss_decisions(fp, dd["scale"].value)
    if "loss" in fixed:
        ld["loss"] = Decision(fixed["loss"], "as asked")
    weight_maps = ld["loss"].value == "weighted-ce"
    n_train = dd["_n_train"].value
    augment = fixed.get("augment") or first_augment(fp, n_train)
    layout = _plan_layout(m, dd, augment, budget)
    speed, sched, model_reason = choose_model(fp, m, budget, augment, dd, weight_maps)
    aug_reason = (f"strong (elastic, larger affine, gamma, blur, noise) for a small training set "
                  f"({n_train} image(s)) over ~{sched['epochs']} passes over its area")
    if "augment" in fixed:
        aug_reason = "as asked"
    elif augment == "strong" and sched["epochs"] < STRONG_MIN_EPOCHS:
        augment, strong_epochs = "default", sched["epochs"]
        layout = _plan_layout(m, dd, augment, budget)  # its data loading costs less
        speed, sched, model_reason = choose_model(fp, m, budget, augment, dd, weight_maps)
        aug_reason = (f"default: with strong augmentation only ~{strong_epochs} passes over "
                      f"the training images would fit (~{sched['epochs']} with default), too "
                      f"few for it to pay off (it needs {STRONG_MIN_EPOCHS}: the model "
                      "underfits before it overfits)")
    elif augment == "default":
        aug_reason = (f"default (flips, mild affine, colour jitter): {n_train} training images "
                      "already vary enough")
    elif augment == "natural":
        aug_reason = (f"natural (left-right flips, zoom 0.75-1.5x, small tilt, colour): the "
                      f"scenes are upright (class mix differs top/bottom by "
                      f"{fp.layout_shift['vertical']:.2f}, left/right by "
                      f"{fp.layout_shift['horizontal']:.2f}), so no top-bottom flips or "
                      "rotations")

    if _trade_batch_for_steps(speed, sched, dd, layout):
        speed, sched, model_reason = choose_model(fp, m, budget, augment, dd, weight_maps)

    d: dict[str, Decision] = {}
    d["model"] = Decision(speed.model, model_reason)
    opts = dict(speed.options)
    d["model_options"] = Decision(opts, "batch norm trains faster and steadier from scratch; "
                                  + dd["depth"].reason if speed.model == "unet" else
                                  "the probed configuration" + (
                                      ": random initial weights, nothing to download"
                                      if from_scratch(speed) else "") + decoder_why(opts))
    for key in ("scale", "size", "batch_size"):
        d[key] = dd[key]
    d.update(ld)
    d["augment"] = Decision(augment, aug_reason)
    d["val_split"] = dd["val_split"]
    d["test_split"] = dd["test_split"]
    d.update(_optimisation_decisions(speed, sched, budget, m, layout))
    n_val = dd["_n_val"].value
    return Plan(data=str(data if data is not None else fp.data), format=format,
                budget_s=budget, fingerprint=fp, measurements=m, decisions=d,
                estimates={**sched, "val_images": n_val, "train_images": n_train,
                           "batch_per_process": d["batch_size"].value // layout.devices})


# ------------------------------------------------------------------------------ make_plan ---

def fingerprint_scale(data: str | Path, format: str = "auto", **format_options: Any) -> float:
    """The scale `fit` caches at by default (1, or longest side shrunk to MAX_SIDE): the
    fingerprint is measured on that cache, so `fit` reuses it when the plan keeps the scale."""
    from unetkit.data.formats import open_dataset
    from unetkit.data.prepare import peek_sizes

    return auto_scale(max(max(s) for s in peek_sizes(open_dataset(data, format,
                                                                   **format_options))))


def _as_measurements(probe: Any) -> Measurements:
    if isinstance(probe, Measurements):
        return probe
    if isinstance(probe, Plan):
        return probe.measurements
    if isinstance(probe, dict):
        return Measurements.from_dict(probe.get("measurements", probe))
    if isinstance(probe, (str, Path)):
        return load_plan(probe, warn=False).measurements
    raise UsageError(f"probe must be measurements, a plan or a plan file, not {type(probe)}.")



def make_plan(data: str | Path, budget_s: float | str, format: str = "auto",
              probe: Any = None, quiet: bool = False, skip_bad: bool = False,
              fixed: dict[str, Any] | None = None, **format_options: Any) -> Plan:
    """Fingerprint the data, probe the hardware (unless `probe` gives recorded measurements:
    a Measurements, a Plan or a plan.yaml path) and decide a plan for the budget.

    `fixed` pins user-made decisions ({"loss": ..., "augment": ...}); see `decide`."""
    from unetkit.data.prepare import prepare

    budget = parse_duration(budget_s, "--budget") if isinstance(budget_s, str) else float(budget_s)
    if budget is None or budget <= 0:
        raise UsageError(f"--budget {budget_s!r} must be a positive duration such as 10m.")
    start = time.perf_counter()
    cache_scale = fingerprint_scale(data, format, **format_options)
    prepared = prepare(data, format, cache_scale, skip_bad, **format_options)
    fp = compute_fingerprint(prepared, data, cache_scale)
    prepare_s = round(time.perf_counter() - start, 2)
    say(f"unetkit plan: fingerprinted {fp.images} image(s) in {prepare_s:.1f}s", quiet)
    if probe is not None:
        m = _as_measurements(probe)
    else:
        if budget < prepare_s + 10:
            raise UsageError(f"A {fmt_s(budget)} budget is too small to train anything useful "
                             f"on {Path(str(data)).name}: reading the data alone took "
                             f"{prepare_s:.0f}s, so use --budget "
                             f"{nice_duration(prepare_s * 4 + 60)} or more.")
        machine = machine_info(fp.channels)
        dd = data_decisions(fp, machine.device)
        cands = candidates(fp, machine, dd["depth"].value, dd["size"].value, budget)
        n_train = dd["_n_train"].value
        batch, size = dd["batch_size"].value, dd["size"].value
        scale = dd["scale"].value
        eval_size = [max(32, round(fp.height["median"] * scale)),
                     max(32, round(fp.width["median"] * scale))]
        augment = first_augment(fp, n_train)

        def worth(cand: Candidate, so_far: Measurements, left: float) -> bool:
            so_far.prepare_s = prepare_s
            return worth_probing(cand, so_far, left, budget, augment, dd,
                                 time.perf_counter() - start - prepare_s)

        allowance = min(90.0, max(12.0, 0.08 * budget))
        processes, why_not = processes_to_probe(machine.cores, batch, budget) \
            if machine.device == "cpu" else (0, "")
        # scenes: threads and processes are measured on the encoder U-Net they will train
        layout_on = next((i for i, c in enumerate(cands) if c.key == SCENE_KEY), 0) \
            if scenes(fp) else 0
        m = probe_hardware(prepared, machine, cands, size, batch, eval_size, fp.channels,
                           fp.num_classes, allowance, worth, quiet, processes, layout_on)
        m.prepare_s = prepare_s
        if why_not:
            m.processes_tested = {"skipped": why_not}
    plan = decide(fp, m, budget, data=str(data), format=format, fixed=fixed)
    return plan


__all__ = ["decide", "make_plan", "data_decisions", "candidates", "TARGET_STEPS", "MIN_STEPS"]
