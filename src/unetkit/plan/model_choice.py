"""Which model to train: the candidates worth timing, whether a wider one is worth its
probe, and the choice among the measured ones (rules 2 and 4 of planner.py).

Pure functions of the fingerprint, the machine and the measured speeds, so a plan replays
from plan.yaml.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from unetkit.errors import UsageError
from unetkit.plan.budget import MIN_STEPS, memory_ok, needed_budget, nice_duration, schedule
from unetkit.plan.data_decisions import scenes
from unetkit.plan.fingerprint import Fingerprint
from unetkit.plan.probe import Candidate, Machine, Measurements
from unetkit.plan.record import Decision, fmt_s
from unetkit.train.defaults import STEM_OPTIONS, use_stem

TARGET_STEPS = 300  # optimiser steps a from-scratch U-Net wants before widening pays off
# step-time ratio to expect from doubling a U-Net's width before two widths are measured:
# the low end of what was measured (docs/decisions.md), since it only decides what to probe
WIDTH_COST = 1.7
# from scratch, with a decoder half as wide as smp's (docs/decisions.md: more passes per minute)
# and timm's ResNet-10-T (one block per stage, deep stem): more per step and per minute than
# ResNet-18 on CamVid, with few steps and with many (docs/decisions.md)
SCENE_ENCODER = {"encoder": "resnet10t", "encoder_weights": "none",
                 "decoder_channels": [128, 64, 32, 16, 16]}
SCENE_LABEL = "ResNet-10-T"  # the encoder's name in the plan's reasons
SCENE_KEY = f"timm-unet-{SCENE_ENCODER['encoder']}"  # its probe candidate


def from_scratch(speed: Any) -> bool:
    """Random initial weights (a plain U-Net or an encoder U-Net without pretrained ones)."""
    return speed.model == "unet" or speed.options.get("encoder_weights") == "none"


def _scene_options() -> dict[str, Any]:
    return {**SCENE_ENCODER, "decoder_channels": list(SCENE_ENCODER["decoder_channels"])}


def decoder_why(options: dict[str, Any]) -> str:
    """Why the decoder is narrower than smp's, for the model options' reason."""
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
        out.append(Candidate(SCENE_KEY, "timm-unet", _scene_options(),
                             f"{SCENE_LABEL} encoder U-Net, from scratch, light decoder"))
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


def choose_model(fp: Fingerprint, m: Measurements, budget_s: float, augment: str,
                 dd: dict[str, Decision], weight_maps: bool = False
                 ) -> tuple[Any, dict[str, Any], str]:
    """The measured model to train, its schedule and the reason: pretrained encoders first
    (when they get half the target steps), then the scenes' encoder, then the widest U-Net
    that gets TARGET_STEPS, else the fastest candidate."""
    batch, size = dd["batch_size"].value, dd["size"].value
    measured = [s for s in m.speeds if memory_ok(s, m, batch, size)] or m.speeds[:1]
    sched = {s.key: schedule(s, m, budget_s, augment, dd, weight_maps) for s in measured}
    unets = [s for s in measured if s.model == "unet"]
    encoders = [s for s in measured if s.model != "unet" and from_scratch(s)]
    pretrained = [s for s in measured if not from_scratch(s)]
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
            (encoders, TARGET_STEPS, f"upright multi-class scenes: a {SCENE_LABEL} encoder U-Net "
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
