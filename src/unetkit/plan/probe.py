"""The hardware probe: what this machine is and how fast it trains the candidate models.

Speeds are measured, not guessed: a few timed steps of the real training step
(`train.module.manual_step`: the module's own step, backward and optimiser step, in the
memory layout `fit` uses) on
batches from the real data pipeline (cache -> `SegmentationDataset` -> paired transforms),
plus the data pipeline's own cost per image for each augmentation level, a full-size forward
pass (validation / prediction cost) and a checkpoint save. Everything measured is recorded in
`Measurements`, which the planner decides from and plan.yaml stores, so a plan can be
replayed from its recorded measurements on any machine.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetkit.data.prepare import PreparedData
from unetkit.progress import say

TIMED_STEPS = 2  # timed training steps per candidate (after one warm-up step)
LOADER_SAMPLES = 8  # samples drawn through the data pipeline per augmentation level
THREAD_GAIN = 0.10  # more threads must be this much faster than one to be used


@dataclass
class Candidate:
    """One model configuration the planner may choose (probed at the plan's patch/batch)."""

    key: str  # e.g. "unet-f16-d4"
    model: str
    options: dict[str, Any]
    description: str = ""


@dataclass
class SpeedSample:
    key: str
    model: str
    options: dict[str, Any]
    size: list[int]
    batch: int
    step_s: float  # one training step (forward, loss, backward, optimiser), data excluded
    train_images_per_s: float  # batch / step_s
    eval_size: list[int]
    eval_s_per_image: float  # one full-size forward pass (validation, prediction)
    checkpoint_s: float  # saving model + optimiser state once
    parameters: int
    threads: int


@dataclass
class Machine:
    device: str  # cpu | cuda
    device_name: str
    cores: int  # usable CPU cores
    threads: int  # torch intra-op threads at probe time
    memory_available_gb: float
    precision: str  # what `fit` resolves precision "auto" to here
    bf16: bool
    torch: str
    pretrained_available: list[str] = field(default_factory=list)


@dataclass
class Measurements:
    """Everything measured on the machine; the planner's only input besides the data."""

    machine: Machine
    size: list[int]  # patch size the speeds were measured at
    batch: int
    # data pipeline seconds per image: per augment level, plus "weight_maps" (extra)
    loader_s_per_image: dict[str, float] = field(default_factory=dict)
    speeds: list[SpeedSample] = field(default_factory=list)
    threads_tested: dict[str, float] = field(default_factory=dict)  # threads -> step_s
    threads: int = 1  # thread count the speeds hold for (the faster one tested)
    # N processes x 1 thread, DDP (plan/probe_processes.py): processes, batch_per_process,
    # step_s, startup_s; or why it was not measured ("skipped"/"error")
    processes_tested: dict[str, Any] = field(default_factory=dict)
    prepare_s: float = 0.0  # decoding/caching the data and the fingerprint
    probe_s: float = 0.0  # this probe

    def speed(self, key: str) -> SpeedSample | None:
        return next((s for s in self.speeds if s.key == key), None)

    def to_dict(self) -> dict[str, Any]:
        from unetkit.plan.fingerprint import plain_types

        return plain_types(asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Measurements:
        values = dict(values)
        values["machine"] = Machine(**values["machine"])
        values["speeds"] = [SpeedSample(**s) for s in values.get("speeds", [])]
        return cls(**values)


def _memory_available_gb(device: torch.device) -> float:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return round(free / 2**30, 1)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return 0.0


def _pretrained_available(channels: int) -> list[str]:
    """Pretrained-encoder models whose ImageNet weights are already on this machine."""
    if channels != 3:
        return []
    found = []
    try:
        from unetkit.models.mobilenet_unet import imagenet_weights_path

        if imagenet_weights_path().is_file():
            found.append("mobilenet_v2-unet")
    except Exception:  # noqa: BLE001 — an unusable encoder is simply not a candidate
        pass
    try:
        from unetkit.models.timm_unet import cached_imagenet_weights

        if cached_imagenet_weights("resnet34"):  # on disk only: planning never downloads
            found.append("timm-unet")
    except Exception:  # noqa: BLE001
        pass
    return found


def machine_info(channels: int) -> Machine:
    from unetkit.device import cpu_has_bf16, cpu_model, pick_device, resolve_precision
    from unetkit.train.parallel import usable_cores

    device = pick_device()
    cores = usable_cores()
    return Machine(
        device=device.type,
        device_name=torch.cuda.get_device_name() if device.type == "cuda" else cpu_model(),
        cores=cores, threads=torch.get_num_threads(),
        memory_available_gb=_memory_available_gb(device),
        precision=resolve_precision("auto", device), bf16=cpu_has_bf16() if device.type == "cpu"
        else bool(torch.cuda.is_bf16_supported()), torch=torch.__version__.split("+")[0],
        pretrained_available=_pretrained_available(channels))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _batches(data: PreparedData, size: list[int], batch: int, channels: int, augment: str,
             count: int, weight_maps: bool = False
             ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], float]:
    """`count` batches through the real pipeline, and the pipeline's seconds per image."""
    from torch.utils.data import default_collate

    from unetkit.data.dataset import channel_stats
    from unetkit.train.loaders import training_dataset

    idx = list(range(len(data.cache)))
    mean, std = channel_stats(data.cache, idx, channels, max_images=16)
    ds = training_dataset(data.cache, idx, size, augment, channels, mean, std, weight_maps)
    torch.manual_seed(0)
    ds[0]  # warm-up (first calls allocate)
    items = []
    start = time.perf_counter()
    for j in range(count * batch):
        items.append(ds[j % len(ds)])
    per_image = (time.perf_counter() - start) / (count * batch)
    return [default_collate(items[b * batch:(b + 1) * batch]) for b in range(count)], per_image


def _loader_cost(data: PreparedData, size: list[int], channels: int, augment: str,
                 weight_maps: bool = False) -> float:
    _, per_image = _batches(data, size, 1, channels, augment, LOADER_SAMPLES, weight_maps)
    return per_image


class CandidateTrainer:
    """One candidate set up the way `fit` trains it, stepped by hand (here, in the process
    probe's DDP workers and in the bench)."""

    def __init__(self, cand: Candidate, channels: int, logits: int, metric_classes: int,
                 device: torch.device, precision: str) -> None:
        from unetkit.models.registry import build_model
        from unetkit.train.defaults import channels_last_for, float32_depthwise_for
        from unetkit.train.losses import build_loss
        from unetkit.train.module import SegmentationModule, build_optimizer

        model = build_model(cand.model, in_channels=channels, classes=logits, **cand.options)
        loss = build_loss("bce-dice" if logits == 1 else "ce-dice", logits)
        self.module = SegmentationModule(  # the memory layout fit trains this model in
            model, loss, metric_classes, [str(i) for i in range(metric_classes)],
            channels_last=channels_last_for(cand.model, device.type),
            float32_depthwise=float32_depthwise_for(precision, device.type)).to(device)
        self.module.train()
        self.opt = build_optimizer("adamw", [p for p in model.parameters() if p.requires_grad],
                                   1e-3, 1e-4)
        self.device, self.precision = device, precision
        self.parameters = sum(p.numel() for p in model.parameters())

    def _autocast(self) -> Any:
        from unetkit.device import autocast_context

        return autocast_context(self.device, self.precision)

    def step(self, batch: tuple[torch.Tensor, torch.Tensor],
             shared_step: Callable[..., Any] | None = None) -> float:
        """Seconds for one step; `shared_step` is a DDP wrapper's (plan/probe_processes.py)."""
        from unetkit.train.module import manual_step

        x, y = batch[0].to(self.device), batch[1].to(self.device)
        _sync(self.device)
        start = time.perf_counter()
        manual_step(self.module, self.opt, (x, y), self.precision, shared_step)
        _sync(self.device)
        return time.perf_counter() - start

    def eval_time(self, size: list[int], channels: int) -> float:
        self.module.eval()
        x = torch.zeros(1, channels, *size, device=self.device)
        times = []
        with torch.no_grad(), self._autocast():
            for _ in range(2):
                _sync(self.device)
                start = time.perf_counter()
                self.module(x)
                _sync(self.device)
                times.append(time.perf_counter() - start)
        self.module.train()
        return times[-1]

    def checkpoint_time(self) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            torch.save({"model": self.module.state_dict(), "opt": self.opt.state_dict()},
                       Path(tmp) / "probe.ckpt")
            return time.perf_counter() - start


def _thread_test(trainer: CandidateTrainer, batches: list, threads: int, m: Measurements) -> float:
    """Time one thread first (cheap even on a busy machine), then `threads`; keep the faster
    (more threads must win by THREAD_GAIN). Sets torch's threads; returns the step time."""
    torch.set_num_threads(1)
    trainer.step(batches[0])  # warm-up
    one = float(np.mean([trainer.step(b) for b in batches[1:]]))
    torch.set_num_threads(threads)
    times = [trainer.step(batches[1])]
    if times[0] < one * (1 - THREAD_GAIN):  # promising: confirm with a second step
        times.append(trainer.step(batches[2 % len(batches)]))
    many = float(np.mean(times))
    m.threads_tested = {"1": round(one, 4), str(threads): round(many, 4)}
    if many < one * (1 - THREAD_GAIN):
        m.threads = threads
        return many
    torch.set_num_threads(1)
    m.threads = 1
    return one


def probe_hardware(data: PreparedData, machine: Machine, candidates: list[Candidate],
                   size: list[int], batch: int, eval_size: list[int], channels: int,
                   num_classes: int, allowance_s: float,
                   worth_probing: Callable[[Candidate, Measurements, float], bool] | None = None,
                   quiet: bool = False, processes: int = 0, layout_on: int = 0
                   ) -> Measurements:
    """Time `candidates` in order (cheapest first), within about `allowance_s` seconds.

    The first candidate and candidate `layout_on` (the one the plan expects to choose) are
    always measured; each other one only while the allowance lasts and
    `worth_probing(candidate, measured so far, seconds left)` says it could be chosen. On
    candidate `layout_on` the thread counts are compared and, with `processes` > 1 (CPU), it
    is also timed as `processes` DDP processes x one thread each
    (plan/probe_processes.py), outside the allowance: what wins for a small U-Net need not
    win for a ResNet encoder.
    """
    from unetkit.device import pick_device

    device = pick_device()
    start = time.perf_counter()
    threads_before = torch.get_num_threads()
    logits = 1 if num_classes == 2 else num_classes
    m = Measurements(machine=machine, size=list(size), batch=batch, threads=threads_before)
    batches, _ = _batches(data, size, batch, channels, "none", TIMED_STEPS + 1)
    try:
        for n, cand in enumerate(candidates):
            left = allowance_s - (time.perf_counter() - start)
            if n not in (0, layout_on) and (left <= 0 or (worth_probing and not
                                                          worth_probing(cand, m, left))):
                continue
            say(f"  probing {cand.key} ({cand.description}) at {size[0]}x{size[1]}, "
                 f"batch {batch} ...", quiet)
            make = functools.partial(CandidateTrainer, cand, channels, logits,
                                     2 if logits == 1 else logits, device, machine.precision)
            trainer = make()
            if n == layout_on and device.type == "cpu" and threads_before > 1:
                step_s = _thread_test(trainer, batches, threads_before, m)
            else:
                trainer.step(batches[0])  # warm-up
                step_s = float(np.mean([trainer.step(b) for b in batches[1:]]))
            if n == 0:  # the data pipeline, at the thread count training will use
                for augment in ("default", "strong", "natural"):
                    m.loader_s_per_image[augment] = round(
                        _loader_cost(data, size, channels, augment), 4)
                # extra cost of the U-Net paper's border weight maps (loss weighted-ce)
                m.loader_s_per_image["weight_maps"] = round(max(0.0, _loader_cost(
                    data, size, channels, "default", True) - m.loader_s_per_image["default"]), 4)
            if n == layout_on and processes > 1 and device.type == "cpu":
                from unetkit.plan.probe_processes import probe_processes

                m.processes_tested = {**probe_processes(make, batches, processes,
                                                        quiet=quiet), "key": cand.key}
            m.speeds.append(SpeedSample(
                key=cand.key, model=cand.model, options=dict(cand.options), size=list(size),
                batch=batch, step_s=round(step_s, 4),
                train_images_per_s=round(batch / step_s, 3), eval_size=list(eval_size),
                eval_s_per_image=round(trainer.eval_time(eval_size, channels), 4),
                checkpoint_s=round(trainer.checkpoint_time(), 4),
                parameters=trainer.parameters, threads=torch.get_num_threads()))
            say(f"    {batch / step_s:.2f} training images/s", quiet)
            del trainer
    finally:
        torch.set_num_threads(threads_before)
    m.probe_s = round(time.perf_counter() - start, 2)
    return m



__all__ = ["Candidate", "Machine", "Measurements", "SpeedSample", "machine_info",
           "probe_hardware"]
