"""The choices `fit` makes when the user leaves them open, each with its reason."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from unetkit.config import FitConfig, parse_duration
from unetkit.data.scale import scaled_size, stretch_scale
from unetkit.device import resolve_precision
from unetkit.train import parallel

MAX_SIDE = 1024  # longer images are shrunk to this longest side (scale "auto")
PATCH_CAP = {"cpu": 256, "cuda": 512}  # patch side at most, per device type
PATCH_PIXELS = {"cpu": 4 * 256 * 256, "cuda": 16 * 256 * 256}  # patch pixels per step
PLAIN_UNETS = ("unet", "unet-bn", "unet1024", "unet-valid")
# The space-to-depth stem on CPU: faster per step, but learns less per epoch, so only with
# large patches and room to run (measurements: docs/decisions.md)
STEM_MIN_SIDE = 256
STEM_MIN_BUDGET_S = 300
STEM_OPTIONS = {"stem": 2, "dropout": 0.0}  # measured together; the planner probes the same


def use_stem(device_type: str, size: list[int], budget_s: float | None = None) -> bool:
    """Whether a from-scratch U-Net gets the 2x2 space-to-depth stem by default: on CPU, for
    patches of STEM_MIN_SIDE px or more, without a time budget or with one of 5 min or more."""
    return (device_type == "cpu" and min(size) >= STEM_MIN_SIDE
            and (budget_s is None or budget_s >= STEM_MIN_BUDGET_S))


@dataclass
class Decisions:
    """Resolved settings plus a human-readable reason per decision."""

    values: dict = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def set(self, key: str, value: object, reason: str) -> None:
        self.values[key] = value
        self.reasons.append(f"{key} = {value}: {reason}")


# ------------------------------------------------ rules shared by fit's defaults and the planner

def round_down(v: int, multiple: int = 32) -> int:
    return max(multiple, v // multiple * multiple)


def auto_scale(longest: int) -> float:
    """Full resolution up to MAX_SIDE px on the longest side, else shrink to it."""
    return 1.0 if longest <= MAX_SIDE else round(MAX_SIDE / longest, 4)


def patch_size(h: int, w: int, device_type: str) -> list[int]:
    """Patches at the images' own scale (smallest image h x w), multiples of 32, capped."""
    cap = patch_cap(device_type)
    return [min(cap, round_down(h)), min(cap, round_down(w))]


def patch_cap(device_type: str) -> int:
    return PATCH_CAP["cpu" if device_type == "cpu" else "cuda"]


def pixels_per_step(device_type: str) -> int:
    return PATCH_PIXELS["cpu" if device_type == "cpu" else "cuda"]


def batch_for(size: list[int], device_type: str) -> int:
    """About 4 (CPU) or 16 (GPU) 256x256 patch equivalents per step, 2 to 32 patches."""
    return int(min(32, max(2, pixels_per_step(device_type) // (size[0] * size[1]))))


def loader_workers(device_type: str) -> int:
    """None on CPU (decoded data is memory-mapped; the cores train), else up to 8."""
    cpus = os.cpu_count() or 1
    return 0 if device_type == "cpu" or cpus <= 2 else min(8, cpus - 1)


def channels_last_for(model: str, device_type: str) -> bool:
    """Plain convolutions train faster in NCHW on CPU; depthwise encoders and CUDA do not."""
    return device_type == "cuda" or model not in PLAIN_UNETS


def float32_depthwise_for(precision: str, device_type: str) -> bool:
    """Strided depthwise convolutions train in float32 under CPU bf16 autocast, whose
    backward of them is several times slower (docs/decisions.md); elsewhere unmeasured."""
    return device_type == "cpu" and precision == "bf16-mixed"


# ----------------------------------------------------------------------------- fit's choices

def choose_scale(config: FitConfig, image_sizes: list[tuple[int, int]]) -> float | str:
    if config.scale == "stretch":
        if not config.size:
            from unetkit.errors import UsageError

            raise UsageError("--scale stretch needs --size HxW to stretch every image to.")
        return stretch_scale(config.size)
    if config.scale != "auto":
        return float(config.scale)
    return auto_scale(max(max(s) for s in image_sizes))


def _cpu_processes(d: Decisions, config: FitConfig, device_type: str) -> None:
    """With --devices N on CPU: the batch split evenly over N processes (train/parallel.py)."""
    processes = parallel.check_cpu_parallel(config.devices, device_type, config.unfreeze_at,
                                            config.num_nodes)
    if processes <= 1:
        return
    batch = d.values["batch_size"]
    if not config.batch_size:
        batch = d.values["batch_size"] = parallel.fit_batch(batch, processes)
    per = parallel.split_batch(batch, processes)
    d.set("devices", processes, f"{processes} CPU processes (DDP over gloo) x "
          f"{parallel.threads_per_process(processes)} thread(s), {per} of the batch of {batch} "
          "each")


def resolve(config: FitConfig, image_sizes: list[tuple[int, int]], scale: float | str,
            device: torch.device) -> Decisions:
    """Fill in size, batch, model width, precision, loss and loader workers."""
    d = Decisions()
    sizes = [scaled_size(s, scale) for s in image_sizes]  # the cache's rule (data/scale.py)
    min_h = min(s[0] for s in sizes)
    min_w = min(s[1] for s in sizes)
    if config.size:
        d.set("size", list(config.size), "as asked")
    else:
        limit = patch_cap(device.type)
        size = patch_size(min_h, min_w, device.type)
        d.set("size", size, f"patches at the images' own scale, at most {limit} px on "
              f"{device.type.upper()} (images are {min_h}x{min_w} px or larger)")
    h, w = d.values["size"]
    if config.batch_size:
        d.set("batch_size", config.batch_size, "as asked")
    else:
        d.set("batch_size", batch_for([h, w], device.type),
              f"about {pixels_per_step(device.type) // 65536} 256x256-patch equivalents per "
              f"step on {device.type}")
    _cpu_processes(d, config, device.type)
    options = dict(config.model_options)
    if config.model in ("unet",) and "norm" not in options:
        options["norm"] = "batch"
    if config.model in ("unet", "unet-bn", "unet-valid") and "filters" not in options:
        options["filters"] = 16 if device.type == "cpu" else 64
    budget_s = parse_duration(config.max_time)
    if config.model in ("unet", "unet-bn") and use_stem(device.type, d.values["size"], budget_s):
        options = {**STEM_OPTIONS, **options}
    if options != config.model_options:
        why = []
        if "norm" in options and "norm" not in config.model_options:
            why.append("batch norm trains faster and steadier")
        if "filters" in options and "filters" not in config.model_options:
            why.append(f"{options['filters']} base filters fit a {device.type.upper()} "
                       "time budget")
        if "stem" in options and "stem" not in config.model_options:
            why.append(f"a {options['stem']}x{options['stem']} space-to-depth stem trains "
                       "several times faster on CPU and scored higher from a 5 min budget up "
                       f"with patches of {STEM_MIN_SIDE} px or more (docs/decisions.md)")
        if "dropout" in options and "dropout" not in config.model_options:
            why.append("no dropout (measured together with the stem)")
        d.set("model_options", options, "; ".join(why))
    else:
        d.values["model_options"] = options
    d.set("channels_last", channels_last_for(config.model, device.type),
          "plain convolutions train faster in NCHW on CPU, depthwise encoders and CUDA "
          "channels-last (docs/decisions.md)")
    precision = resolve_precision(config.precision, device)
    d.set("precision", precision, "native bf16 on this hardware" if "bf16" in precision
          else "full precision" if precision == "32" else "mixed precision on GPU")
    if float32_depthwise_for(precision, device.type) and config.model not in PLAIN_UNETS:
        d.set("float32_depthwise", True, "strided depthwise convolutions (MobileNet/"
              "EfficientNet encoders) train in float32: the CPU's bf16 backward of them is "
              "several times slower (docs/decisions.md)")
    else:
        d.values["float32_depthwise"] = False
    if config.num_workers is not None:
        d.values["num_workers"] = config.num_workers
    else:
        workers = loader_workers(device.type)
        d.set("num_workers", workers, "decoded data is cached in memory-mapped arrays, so "
              + ("augmenting in-process leaves the cores to training" if workers == 0
                 else "workers keep the GPU fed"))
    return d
