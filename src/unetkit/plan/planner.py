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
   RGB without thin structures; each is probed (timed) cheapest first.
3. Budget (budget.py): training time = budget - planning - start-up - final evaluation - margin.
   An epoch costs its training steps (measured step time + measured data-pipeline time per
   image) plus full-size validation (measured forward time) plus checkpoint saves.
4. Model: the widest candidate that still gets TARGET_STEPS optimiser steps in the training
   time; else the fastest, with the batch cut (down to MIN_BATCH) so it gets closer to
   TARGET_STEPS steps. Fewer than MIN_STEPS steps with the fastest -> the budget is too
   small (UsageError naming the budget that would do).
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
   docs/decisions.md): whole frames at 192 px on the long side, batch 8, natural
   augmentation, median-frequency weights (20 for thin classes left under 2 px), and a
   from-scratch ResNet-10-T U-Net candidate with a decoder half as wide as smp's, chosen when
   it gets TARGET_STEPS steps; threads
   and processes are measured on it.

An epoch is what `fit` runs: about one image-area of patches per training image
(`ceil(train area / patch area)` samples, drop_last) and then full-size validation.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from unetkit.config import parse_duration
from unetkit.device import BF16_ENV, bf16_forced
from unetkit.errors import UsageError
from unetkit.plan.budget import (
    MIN_STEPS,
    fixed_costs,
    memory_ok,
    needed_budget,
    nice_duration,
    schedule,
)
from unetkit.plan.cpu_layout import Layout, choose_layout, layout_batch, processes_to_probe
from unetkit.plan.data_decisions import data_decisions, loss_decisions, scenes
from unetkit.plan.fingerprint import Fingerprint, compute_fingerprint
from unetkit.plan.probe import Candidate, Machine, Measurements, machine_info, probe_hardware
from unetkit.plan.record import Decision, Plan, fmt_s, load_plan
from unetkit.progress import say
from unetkit.train.defaults import (
    STEM_OPTIONS,
    auto_scale,
    use_stem,
)

TARGET_STEPS = 300  # optimiser steps a from-scratch U-Net wants before widening pays off
MIN_BATCH = 4  # smallest batch the planner trades for more steps (batch-norm statistics)
SMALL_DATA = 100  # training images at or below which strong augmentation is considered
# the measurements behind the next rule are in docs/decisions.md
STRONG_MIN_EPOCHS = 1000  # above every pass count measured on CPU, where strong always lost
# step-time ratio to expect from doubling a U-Net's width before two widths are measured:
# the low end of what was measured (docs/decisions.md), since it only decides what to probe
WIDTH_COST = 1.7
# from scratch, with a decoder half as wide as smp's (docs/decisions.md: more passes per minute)
# and timm's ResNet-10-T (one block per stage, deep stem): more per step and per minute than
# ResNet-18 on CamVid, with few steps and with many (docs/decisions.md)
SCENE_ENCODER = {"encoder": "resnet10t", "encoder_weights": "none",
                 "decoder_channels": [128, 64, 32, 16, 16]}


def _from_scratch(speed: Any) -> bool:
    return speed.model == "unet" or speed.options.get("encoder_weights") == "none"


def _scene_encoder() -> dict[str, Any]:
    return {**SCENE_ENCODER, "decoder_channels": list(SCENE_ENCODER["decoder_channels"])}


def _precision_why(precision: str) -> str:
    if "bf16" in precision:
        return "native bf16 on this hardware"
    if precision != "32":
        return "mixed precision on GPU"
    if bf16_forced() is False:
        return f"full precision: bf16 switched off ({BF16_ENV}=0)"
    return "full precision: no native bf16 on this CPU"


def _decoder_why(options: dict[str, Any]) -> str:
    if "decoder_channels" not in options:
        return ""
    channels = options["decoder_channels"]
    return (f"; decoder channels {channels[0]}..{channels[-1]} instead of smp's 256..16: more "
            "passes per minute on a CPU, which rare scene classes need (docs/decisions.md)")


def candidates(fp: Fingerprint, machine: Machine, depth: int,
               size: list[int] | None = None, budget_s: float | None = None) -> list[Candidate]:
    """Models worth timing, cheapest first."""
    # with the stem (and no dropout) exactly when fit's defaults would add it; stem models
    # wider than 16 filters lost on membrane (docs/decisions.md)
    stem = size is not None and use_stem(machine.device, size, budget_s)
    widths = (8, 16) if stem else (8, 16, 32) if machine.device == "cpu" else (16, 32, 64)
    extra = STEM_OPTIONS if stem else {}
    out = [Candidate(f"unet-f{f}-d{depth}" + ("-s2" if stem else ""), "unet",
                     {"filters": f, "depth": depth, "norm": "batch", **extra},
                     f"U-Net, {f} filters, depth {depth}, batch norm"
                     + (", 2x2 space-to-depth stem" if stem else "")) for f in widths]
    if scenes(fp):
        out.append(Candidate("timm-unet-resnet10t", "timm-unet", _scene_encoder(),
                             "ResNet-10-T encoder U-Net, from scratch, light decoder"))
    if fp.channels == 3 and not fp.thin_classes:
        if "mobilenet_v2-unet" in machine.pretrained_available:
            out.append(Candidate("mobilenet_v2-unet", "mobilenet_v2-unet",
                                 {"encoder_weights": "imagenet", "freeze_encoder": True},
                                 "ImageNet MobileNetV2 encoder, frozen"))
        if "timm-unet" in machine.pretrained_available:
            out.append(Candidate("timm-unet-resnet34", "timm-unet",
                                 {"encoder": "resnet34", "encoder_weights": "imagenet"},
                                 "ImageNet ResNet-34 encoder"))
    return out


def width_cost(speeds: list[Any]) -> float:
    """The step-time ratio the next doubling of a U-Net's width should cost: the last
    doubling's once two widths are measured, else WIDTH_COST."""
    unets = [s for s in speeds if s.model == "unet"]
    if len(unets) >= 2 and unets[-2].step_s > 0:
        return max(1.0, unets[-1].step_s / unets[-2].step_s)
    return WIDTH_COST


def worth_probing(cand: Candidate, so_far: Measurements, left: float, budget: float,
                  augment: str, dd: dict[str, Decision], probed_s: float) -> bool:
    """Probe a wider model only if it could be chosen (its guessed speed, from the last
    model measured, gets the steps it needs in the budget) and its probe fits `left`."""
    last = so_far.speeds[-1]
    factor = width_cost(so_far.speeds) if cand.model == "unet" else 1.0
    guess = dataclasses.replace(last, step_s=last.step_s * factor,
                                eval_s_per_image=last.eval_s_per_image * factor)
    if 4 * guess.step_s > left:
        return False
    so_far.probe_s = probed_s + 4 * guess.step_s
    sched = schedule(guess, so_far, budget, augment, dd)
    return sched["steps"] >= (TARGET_STEPS if cand.options.get("encoder_weights")
                              in (None, "none") else TARGET_STEPS // 2)


def first_augment(fp: Fingerprint, n_train: int) -> str:
    """natural for upright scenes, strong for small data sets, else default (the planner
    may still trade strong for default when too few passes fit)."""
    if scenes(fp):
        return "natural"
    return "strong" if n_train <= SMALL_DATA else "default"


# ------------------------------------------------------------------------------ decisions ---

def _choose_model(fp: Fingerprint, m: Measurements, budget_s: float, augment: str,
                  dd: dict[str, Decision], weight_maps: bool = False
                  ) -> tuple[Any, dict[str, Any], str]:
    batch, size = dd["batch_size"].value, dd["size"].value
    measured = [s for s in m.speeds if memory_ok(s, m, batch, size)] or m.speeds[:1]
    sched = {s.key: schedule(s, m, budget_s, augment, dd, weight_maps) for s in measured}
    unets = [s for s in measured if s.model == "unet"]
    encoders = [s for s in measured if s.model != "unet" and _from_scratch(s)]
    pretrained = [s for s in measured if not _from_scratch(s)]
    fastest = max(measured, key=lambda s: sched[s.key]["steps"])
    if sched[fastest.key]["steps"] < MIN_STEPS:
        need = needed_budget(fastest, m, augment, dd, weight_maps)
        raise UsageError(
            f"A {fmt_s(budget_s)} budget is too small to train anything useful on "
            f"{Path(fp.data).name} here: even the fastest model ({fastest.key}, "
            f"{fastest.train_images_per_s:.2f} images/s) needs about {fmt_s(need)} for "
            f"planning, start-up, {MIN_STEPS} training steps and the final evaluation, so use "
            f"--budget {nice_duration(need)} or more.")
    # pretrained encoders first, then the scenes' from-scratch encoder, then plain U-Nets
    for group, need, why in (
            (pretrained, TARGET_STEPS // 2, "ImageNet weights are on disk and RGB images "
             "without thin structures suit a pretrained encoder, which converges in fewer "
             "steps: {steps} steps fit the budget"),
            (encoders, TARGET_STEPS, "upright multi-class scenes: a ResNet-10-T encoder U-Net "
             "(from scratch) learned more per minute than plain U-Nets on street scenes, and "
             f"it gets {{steps}} optimiser steps (>= {TARGET_STEPS}) here")):
        able = [s for s in group if sched[s.key]["steps"] >= need]
        if able:
            return able[0], sched[able[0].key], why.format(steps=sched[able[0].key]["steps"])
    enough = [s for s in unets if sched[s.key]["steps"] >= TARGET_STEPS]
    if enough:
        best = max(enough, key=lambda s: s.options.get("filters", 0))
        wider = [s for s in unets if s.options.get("filters", 0) > best.options["filters"]]
        why = (f"the widest U-Net that still gets >= {TARGET_STEPS} optimiser steps: "
               f"{sched[best.key]['steps']} steps at {best.train_images_per_s:.2f} images/s")
        if wider:
            w = wider[0]
            why += (f"; {w.options['filters']} filters would get only "
                    f"{sched[w.key]['steps']}")
        elif len(unets) < 3 and "stem" not in best.options:  # stem: 8/16 only
            why += "; wider ones were not probed (too slow to reach the target here)"
    else:
        best = fastest
        why = (f"the fastest candidate: {sched[best.key]['steps']} optimiser steps fit the "
               f"budget (fewer than the {TARGET_STEPS} a wider model would want)")
    return best, sched[best.key], why


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


def _optimisation_decisions(speed: Any, sched: dict[str, Any], budget: float,
                            m: Measurements, layout: Layout | None = None
                            ) -> dict[str, Decision]:
    """Optimiser, rate, schedule, epoch cap and time limit, precision, threads, processes."""
    d: dict[str, Decision] = {}
    opts = dict(speed.options)
    pretrained = not _from_scratch(speed)
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
    speed, sched, model_reason = _choose_model(fp, m, budget, augment, dd, weight_maps)
    aug_reason = (f"strong (elastic, larger affine, gamma, blur, noise) for a small training set "
                  f"({n_train} image(s)) over ~{sched['epochs']} passes over its area")
    if "augment" in fixed:
        aug_reason = "as asked"
    elif augment == "strong" and sched["epochs"] < STRONG_MIN_EPOCHS:
        augment, strong_epochs = "default", sched["epochs"]
        layout = _plan_layout(m, dd, augment, budget)  # its data loading costs less
        speed, sched, model_reason = _choose_model(fp, m, budget, augment, dd, weight_maps)
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

    if sched["steps"] < TARGET_STEPS and dd["batch_size"].value > MIN_BATCH:
        old_batch, old_steps = dd["batch_size"].value, sched["steps"]
        batch = max(MIN_BATCH, int(old_batch * old_steps / TARGET_STEPS))
        dd["batch_size"] = Decision(batch, (
            f"{old_batch} would leave only {old_steps} optimiser steps in the budget; a short "
            f"budget needs updates more than large batches, so {batch} (at least {MIN_BATCH} "
            "for batch norm)"))
        _even_batch(dd, layout)
        speed, sched, model_reason = _choose_model(fp, m, budget, augment, dd, weight_maps)

    d: dict[str, Decision] = {}
    d["model"] = Decision(speed.model, model_reason)
    opts = dict(speed.options)
    d["model_options"] = Decision(opts, "batch norm trains faster and steadier from scratch; "
                                  + dd["depth"].reason if speed.model == "unet" else
                                  "the probed configuration" + (
                                      ": random initial weights, nothing to download"
                                      if _from_scratch(speed) else "") + _decoder_why(opts))
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
        layout_on = next((i for i, c in enumerate(cands) if c.options == SCENE_ENCODER), 0) \
            if scenes(fp) else 0
        m = probe_hardware(prepared, machine, cands, size, batch, eval_size, fp.channels,
                           fp.num_classes, allowance, worth, quiet, processes, layout_on)
        m.prepare_s = prepare_s
        if why_not:
            m.processes_tested = {"skipped": why_not}
    plan = decide(fp, m, budget, data=str(data), format=format, fixed=fixed)
    return plan


__all__ = ["decide", "make_plan", "data_decisions", "candidates", "TARGET_STEPS", "MIN_STEPS"]
