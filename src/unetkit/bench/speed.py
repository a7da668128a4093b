"""`unetkit bench speed`: unetkit beside the baselines people use, in one run, on one machine.

Two families, each timed interleaved on the same inputs (a batch of synthetic RGB images):

* classic: unetkit's `unet` (norm=batch, 31,037,633 parameters) beside `ReferenceUNet`
  (bench/reference.py, the same architecture written the milesial/Pytorch-UNet way);
* mobilenet: unetkit's `timm-unet` on `mobilenetv2_100` beside segmentation_models_pytorch's
  `Unet("mobilenet_v2")` (which keeps the 1280-channel head: 6.6M parameters against
  4.0M; smp's "tu-mobilenetv2_100" equals ours), plus unetkit's `mobilenet_v2-unet`.

unetkit's figures come from its real code paths: training is
`train.module.manual_step` (bce-dice loss, the optimizer and schedule of its
`configure_optimizers`, channels_last and the precision `fit` picks), inference is
`Predictor.batch_probabilities` on the batch, as `predict` runs it. The baselines run fp32,
NCHW, eager.
Ratios are unetkit / baseline images per second (> 1: unetkit is faster).

Levers (with `levers=True`) are timed in the same interleaved rounds and checked for
accuracy: a short training run (the unetkit path against a plain fp32 eager loop on the same
model, initial weights and batches) must end at the same loss within noise, and inference
levers must agree with the fp32 eager masks of that trained model on >= 99.5% of pixels.
"""

from __future__ import annotations

import copy
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from unetkit.bench.infer_levers import lever_variants
from unetkit.bench.measure import (
    Variant,
    cpu_flags,
    cpu_model,
    interleave,
    load_average,
    memory_method,
    say,
)
from unetkit.bench.results import (
    agreement,
    fill_extra,
    fill_phase,
    lever_entry,
    predict_default,
)
from unetkit.bench.runners import (
    PlainTrainer,
    UnetkitTrainer,
    eager_probs,
    make_batch,
    predictor_forward,
)
from unetkit.bench.threads import probe_threads, train_processes

LOSS_TOLERANCE = 0.02  # absolute, or twice the standard error of the baseline's final loss


@dataclass
class SpeedOptions:
    batch: int = 8
    size: list[int] = field(default_factory=lambda: [128, 128])
    threads: int | None = None  # None: probe 1 vs 2 threads (full mode) and take the faster
    quick: bool = False  # few iterations, small checks, no torch.compile (used by the tests)
    levers: bool = True
    compile: bool | None = None  # torch.compile inference lever; None = on unless quick
    rounds: int | None = None  # interleaved rounds; None = 3 (quick: 1)
    target_s: float | None = None  # seconds per timed segment; None = 3 (quick: 0)
    check_steps: int | None = None  # training steps of the loss check; None = 50 (quick: 3)
    check_size: int = 64
    check_batch: int = 4
    unet_filters: int = 64  # smaller only to make tests fast
    families: tuple[str, ...] = ("classic", "mobilenet")
    data: bool = True
    data_images: int | None = None  # None = 64 (quick: 8)
    data_image_size: int | None = None  # None = 256 (quick: 64)
    device: str | None = None
    quiet: bool = False
    precision: str = "auto"  # unetkit's training and predict precision (auto: as fit/predict)
    scaling: bool | None = None  # predict_scaling (bench/scaling.py); None = on unless quick
    scaling_sizes: tuple[int, ...] | None = None  # None = bench/scaling.py's SIZES

    def resolved(self) -> SpeedOptions:
        q = self.quick
        out = copy.copy(self)
        out.compile = (not q) if self.compile is None else self.compile
        out.scaling = (not q) if self.scaling is None else self.scaling
        out.rounds = self.rounds or (1 if q else 3)
        out.target_s = (0.0 if q else 3.0) if self.target_s is None else self.target_s
        out.check_steps = self.check_steps if self.check_steps is not None else (3 if q else 50)
        out.data_images = self.data_images or (8 if q else 64)
        out.data_image_size = self.data_image_size or (64 if q else 256)
        return out


# ----------------------------------------------------------------------------- families

@dataclass
class Family:
    key: str
    unetkit_label: str
    unetkit_name: str
    unetkit_options: dict[str, Any]
    reference_label: str
    make_reference: Callable[[], nn.Module]
    extras: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    # the OpenVINO levers (bench/infer_levers.py OPENVINO_LEVERS) are not in these lists: all
    # three built in one process beside the others, a later step crashed (heap corruption)
    infer_levers: tuple[str, ...] = ("nchw", "channels_last_model", "bn_fold",
                                     "bn_fold_channels_last_model", "onnxruntime",
                                     "onnxruntime_int8", "compile")
    notes: dict[str, Any] = field(default_factory=dict)


def families(opts: SpeedOptions) -> dict[str, Family]:
    from unetkit.bench.reference import ReferenceUNet, smp_unet

    f = opts.unet_filters
    suffix = "" if f == 64 else f", filters={f}"
    return {
        "classic": Family(
            "classic", f"unetkit unet (norm=batch{suffix}), channels_last, {{precision}}",
            "unet", {"norm": "batch", "filters": f},
            f"bench/reference.py ReferenceUNet (milesial/Pytorch-UNet layout, BatchNorm"
            f"{suffix}), fp32 NCHW eager", lambda: ReferenceUNet(3, 1, f)),
        "mobilenet": Family(
            "mobilenet", "unetkit timm-unet (encoder mobilenetv2_100, encoder_weights=None), "
            "channels_last, {precision}", "timm-unet",
            {"encoder": "mobilenetv2_100", "encoder_weights": None},
            "segmentation_models_pytorch Unet('mobilenet_v2', encoder_weights=None), fp32 "
            "NCHW eager", smp_unet,
            extras=[("mobilenet_v2_unet", "mobilenet_v2-unet", {"encoder_weights": None})],
            infer_levers=("nchw", "channels_last_model", "bn_fold",
                          "bn_fold_channels_last_model", "onnxruntime", "onnxruntime_int8",
                          "compile", "bf16")),
    }


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _final(losses: list[float]) -> tuple[float, float]:
    """Mean of the last 10 step losses and the standard error of that mean."""
    tail = losses[-10:]
    sem = statistics.stdev(tail) / math.sqrt(len(tail)) if len(tail) > 1 else 0.0
    return statistics.fmean(tail), sem


def train_check(model: nn.Module, device: torch.device, opts: SpeedOptions
                ) -> tuple[dict[str, Any], nn.Module]:
    """Train a copy the plain fp32 eager way and a copy through unetkit's training step on
    the same batches from the same weights; return the comparison and the plain-trained
    model (the weights the inference levers are checked with)."""
    steps = int(opts.check_steps or 0)
    pool = [make_batch(opts.check_batch, [opts.check_size] * 2, 10_000 + 100 * i)
            for i in range(8)]
    pool = [(x.to(device), y.to(device)) for x, y in pool]
    runs: dict[str, list[float]] = {}
    trained: dict[str, nn.Module] = {}
    for name in ("fp32_eager_nchw", "unetkit"):
        net = copy.deepcopy(model)
        runner: Any = PlainTrainer(net, device) if name == "fp32_eager_nchw" else \
            UnetkitTrainer(net, device, channels_last=True, schedule=False)
        torch.manual_seed(1234)  # same dropout masks
        runs[name] = [runner.train_step(*pool[i % len(pool)]) for i in range(steps)]
        trained[name] = net
        say(f"  check: {steps} training steps ({name}) final loss "
            f"{_final(runs[name])[0]:.4f}" if steps else "", opts.quiet or not steps)
    base, noise = _final(runs["fp32_eager_nchw"]) if steps else (math.nan, 0.0)
    uk, _ = _final(runs["unetkit"]) if steps else (math.nan, 0.0)
    tol = max(LOSS_TOLERANCE, 2 * noise)
    result = {"steps": steps, "batch": opts.check_batch, "size": opts.check_size,
              "fp32_eager_loss": round(base, 4), "unetkit_loss": round(uk, 4),
              "delta": round(uk - base, 4), "tolerance": round(tol, 4),
              "passed": bool(steps) and abs(uk - base) <= tol,
              "rule": "mean of the last 10 step losses within max(0.02, 2 x the standard "
                      "error of that mean in the fp32 eager run)"}
    return result, trained["fp32_eager_nchw"].eval()


def run_family(fam: Family, device: torch.device, opts: SpeedOptions
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """One family: models built, then training and inference timed (and levers checked)."""
    from unetkit.device import resolve_precision
    from unetkit.models.registry import build_model

    precision = resolve_precision(opts.precision, device)
    say(f"{fam.key}: building models", opts.quiet)
    torch.manual_seed(0)
    uk = build_model(fam.unetkit_name, **fam.unetkit_options)
    ref = fam.make_reference()
    extras = {key: build_model(name, **options) for key, name, options in fam.extras}
    block: dict[str, Any] = {
        "unetkit": fam.unetkit_label.format(precision="fp32" if precision == "32"
                                            else precision),
        "reference": fam.reference_label, "unetkit_params": _count(uk),
        "reference_params": _count(ref)}
    if fam.key == "mobilenet":
        from unetkit.bench.reference import smp_unet

        block["smp_tu_mobilenetv2_100_params"] = _count(smp_unet("tu-mobilenetv2_100"))
    for key, model in extras.items():
        block[f"{key}_params"] = _count(model)
    x, y = make_batch(opts.batch, opts.size, 0)
    x, y = x.to(device), y.to(device)
    # the accuracy check also gives trained weights for the inference checks
    if opts.levers:
        check, trained = train_check(uk, device, opts)
        block["train_check"] = check
    else:
        trained = copy.deepcopy(uk).eval()
    levers = {"train": _time_training(fam, uk, ref, extras, x, y, block, device, opts),
              "infer": _time_inference(fam, trained, ref, extras, x, block, device, opts,
                                       precision)}
    return block, levers


def _time_training(fam: Family, uk: nn.Module, ref: nn.Module, extras: dict[str, nn.Module],
                   x: torch.Tensor, y: torch.Tensor, block: dict[str, Any],
                   device: torch.device, opts: SpeedOptions) -> dict[str, Any]:
    """Training steps of the reference, unetkit, the extras and the layout levers."""
    from unetkit.bench.reference import ReferenceRunner
    from unetkit.models.layers import float32_strided_depthwise

    say(f"{fam.key}: training, batch {opts.batch} at {opts.size[0]}x{opts.size[1]}",
        opts.quiet)
    ref_runner = ReferenceRunner(ref, device)
    trainers = {"unetkit": UnetkitTrainer(uk, device, precision=opts.precision)}
    trainers |= {key: UnetkitTrainer(m, device, precision=opts.precision)
                 for key, m in extras.items()}
    if opts.levers:
        trainers["nchw"] = UnetkitTrainer(copy.deepcopy(uk), device, channels_last=False,
                                          precision=opts.precision)
        trainers["channels_last_model"] = UnetkitTrainer(
            copy.deepcopy(uk).to(memory_format=torch.channels_last), device,
            precision=opts.precision)
        bf16_dw = copy.deepcopy(uk)
        if trainers["unetkit"].float32_depthwise and float32_strided_depthwise(bf16_dw, False):
            trainers["bf16_strided_depthwise"] = UnetkitTrainer(
                bf16_dw, device, precision=opts.precision, float32_depthwise=False)
    train_vs = [Variant("reference", lambda: ref_runner.train_step(x, y), opts.batch)]
    train_vs += [Variant(k, lambda t=t: t.train_step(x, y), opts.batch)
                 for k, t in trainers.items()]
    interleave(train_vs, device, opts.rounds, f"{fam.key} train", opts.quiet,
               optional={"nchw", "channels_last_model", "bf16_strided_depthwise"},
               target_s=opts.target_s)
    tv = {v.name: v for v in train_vs}
    fill_phase(block, "train", tv["reference"], tv["unetkit"], list(extras))
    for key in extras:
        fill_extra(block, "train", key, tv[key], tv["reference"])
    if not opts.levers:
        return {}
    return {
        "nchw": lever_entry(
            tv["nchw"], block, "train", {"passed": True, "note": "fp32 eager NCHW is the "
                                         "check's baseline computation itself"},
            "SegmentationModule(channels_last=False): inputs stay NCHW"),
        "channels_last_model": lever_entry(
            tv["channels_last_model"], block, "train",
            {"passed": True, "note": "same computation as unetkit's default (checked in "
                                     "train_check); only the weights' memory layout differs"},
            "model.to(memory_format=torch.channels_last) as well as channels_last inputs: "
            "no per-call weight layout copies"),
        **({"bf16_strided_depthwise": lever_entry(
            tv["bf16_strided_depthwise"], block, "train",
            {"passed": True, "note": "the same model with its strided depthwise convolutions "
                                     "in bf16 too; unetkit's default runs them in float32"},
            "strided depthwise convolutions under bf16 autocast (not Float32Conv2d): the "
            "default's ratio to this is what running them in float32 gains")}
           if "bf16_strided_depthwise" in tv else {})}


def _time_inference(fam: Family, trained: nn.Module, ref: nn.Module,
                    extras: dict[str, nn.Module], x: torch.Tensor, block: dict[str, Any],
                    device: torch.device, opts: SpeedOptions, precision: str
                    ) -> dict[str, Any]:
    """Inference of the reference, unetkit's Predictor, the extras and the inference levers,
    each lever's masks checked against the fp32 eager ones."""
    from unetkit.bench.reference import ReferenceRunner

    say(f"{fam.key}: inference, batch {opts.batch} at {opts.size[0]}x{opts.size[1]}",
        opts.quiet)
    ref_eval = ReferenceRunner(ref, device)
    uk_fwd = predictor_forward(copy.deepcopy(trained), device, opts.precision)
    infer_vs = [Variant("reference", lambda: ref_eval.infer(x), opts.batch),
                Variant("unetkit", lambda: uk_fwd(x), opts.batch)]
    for key, model in extras.items():
        fwd = predictor_forward(model, device, opts.precision)
        infer_vs.append(Variant(key, lambda fwd=fwd: fwd(x), opts.batch))
    info: dict[str, dict[str, Any]] = {}
    if opts.levers:
        calib = [make_batch(opts.check_batch, [opts.check_size] * 2, 20_000 + 100 * i)[0]
                 for i in range(4)]
        lever_vs, info = lever_variants(fam, trained, device, x, calib, opts)
        infer_vs += lever_vs
    interleave(infer_vs, device, opts.rounds, f"{fam.key} infer", opts.quiet,
               optional=set(info), target_s=opts.target_s)
    iv = {v.name: v for v in infer_vs}
    fill_phase(block, "infer", iv["reference"], iv["unetkit"], list(extras))
    for key in extras:
        fill_extra(block, "infer", key, iv[key], iv["reference"])
    if not opts.levers:
        return {}
    base = eager_probs(trained, x)
    block["infer_check"] = {**agreement(uk_fwd(x), base),
                            "foreground_fraction": round(float((base > 0.5).float().mean()), 4)}
    out: dict[str, Any] = {}
    for name, entry in info.items():
        v = iv.get(name)
        if v is None or "error" in entry:
            out[name] = {"verdict": "failed", **entry}
            continue
        check = agreement(v.step(), base) if v.error is None else None
        out[name] = lever_entry(v, block, "infer", check, entry.get("note", ""),
                                 setup_s=entry.get("setup_s"))
    block["predict_default"] = predict_default(block, out, precision)
    return out


# ----------------------------------------------------------------------------- run

def run_speed(opts: SpeedOptions | None = None) -> dict[str, Any]:
    """Run the speed bench; returns the JSON of `unetkit bench speed --json`."""
    from unetkit.device import pick_device, resolve_precision

    opts = (opts or SpeedOptions()).resolved()
    device = pick_device(opts.device)
    start = time.perf_counter()
    threads_before = torch.get_num_threads()
    load_start = load_average()
    warnings.filterwarnings("ignore", message=".*self.log.*")
    warnings.filterwarnings("ignore", message=".*self.trainer.*")
    probe = None
    try:
        if opts.threads is not None:
            threads, chosen_by = opts.threads, "--threads"
        elif device.type == "cpu" and (os.cpu_count() or 1) >= 2 and not opts.quick:
            say("threads: probing 1 vs 2 threads", opts.quiet)
            probe = probe_threads(device, opts)
            threads, chosen_by = probe["chosen"], "probe (faster of 1 and 2 threads)"
        else:
            threads, chosen_by = threads_before, "as set in this process"
        torch.set_num_threads(threads)
        result: dict[str, Any] = {}
        levers_all: dict[str, Any] = {}
        fams = families(opts)
        for key in opts.families:
            block, lev = run_family(fams[key], device, opts)
            result[key] = block
            levers_all[key] = lev
        if opts.data:
            from unetkit.bench.data import run_data

            result["data"] = run_data(images=opts.data_images,
                                      image_size=opts.data_image_size, size=opts.size,
                                      batch=opts.batch, quiet=opts.quiet,
                                      worker_lever=opts.levers)
            if "workers_lever" in result["data"]:
                levers_all["data_workers"] = result["data"].pop("workers_lever")
        if probe is not None:
            levers_all["threads"] = probe
            say("train_processes: 1 process vs N DDP processes", opts.quiet)
            result["train_processes"] = train_processes(device, opts)
        if opts.levers:
            result["levers"] = levers_all
        if opts.scaling:
            from unetkit.bench.scaling import SIZES, run_scaling

            result["predict_scaling"] = run_scaling(opts.scaling_sizes or SIZES,
                                                    threads=threads, quiet=opts.quiet)
        result["settings"] = {
            "device": device.type, "threads": torch.get_num_threads(),
            "threads_chosen_by": chosen_by, "interop_threads": torch.get_num_interop_threads(),
            "precision": resolve_precision(opts.precision, device),
            "memory_format": "unetkit: channels_last inputs (SegmentationModule(channels_"
                             "last=True), Predictor.batch_probabilities); references: NCHW",
            "compile": False, "compile_lever": bool(opts.compile),
            "cpu_flags": cpu_flags(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "batch": opts.batch, "size": list(opts.size), "rounds": opts.rounds,
            "segment_target_s": opts.target_s, "quick": opts.quick,
            "memory_method": memory_method(device), "torch": torch.__version__,
            "versions": _versions(), "load_average_start": load_start,
            "load_average_end": load_average(),
            "wall_s": round(time.perf_counter() - start, 1),
        }
    finally:
        torch.set_num_threads(threads_before)
    return result


def _versions() -> dict[str, str]:
    out = {}
    for mod in ("timm", "segmentation_models_pytorch", "onnxruntime", "openvino", "lightning"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            out[mod] = "absent"
    return out
