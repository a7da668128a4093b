"""Whether a second intra-op thread, or N training processes instead of one, speed up
unetkit's steps on this machine."""

from __future__ import annotations

import math
from typing import Any

import torch

from unetkit.bench.measure import Variant, interleave, ratio, sig
from unetkit.bench.runners import UnetkitTrainer, make_batch, predictor_forward


def probe_threads(device: torch.device, opts: Any) -> dict[str, Any]:
    """Time unetkit's classic inference and mobilenet training step at 1 and 2 threads."""
    from unetkit.models.registry import build_model

    x, y = make_batch(opts.batch, opts.size, 0)
    torch.manual_seed(0)
    unet = build_model("unet", norm="batch", filters=opts.unet_filters)
    fwd = predictor_forward(unet, device)
    mob = UnetkitTrainer(build_model("timm-unet", encoder="mobilenetv2_100",
                                     encoder_weights=None), device)
    out: dict[str, Any] = {}
    for label, step in (("classic_infer", lambda: fwd(x)),
                        ("mobilenet_train", lambda: mob.train_step(x, y))):
        vs = [Variant(f"{n}_thread{'s' if n > 1 else ''}", step, opts.batch,
                      setup=lambda n=n: torch.set_num_threads(n)) for n in (1, 2)]
        interleave(vs, device, 2, f"threads {label}", opts.quiet,
                   target_s=opts.target_s)
        out[label] = {v.name + "_ips": sig(v.ips) for v in vs}
        out[label]["ratio_2_vs_1"] = ratio(sig(vs[1].ips), sig(vs[0].ips))
    gain = math.sqrt(out["classic_infer"]["ratio_2_vs_1"] *
                     out["mobilenet_train"]["ratio_2_vs_1"])
    out["geomean_ratio_2_vs_1"] = round(gain, 3)
    out["chosen"] = 2 if gain > 1.0 else 1
    return out


PROCESS_STEPS = 4  # timed steps per layout (after one warm-up)


def _one_process_ips(trainer: Any, batches: list, threads: int) -> float:
    torch.set_num_threads(threads)
    trainer.step(batches[0])  # warm-up at this thread count
    times = [trainer.step(b) for b in batches[1:]]
    return len(batches[0][0]) / (sum(times) / len(times))


def train_processes(device: torch.device, opts: Any) -> dict[str, Any]:
    """Training images/s of the planner's small CPU U-Net on 1 process (1 and all threads)
    against N DDP processes x one thread, N = cores (as `fit --devices N` trains): the same
    step and process probe the planner decides with (plan/probe_processes.py)."""
    import functools

    from unetkit.device import resolve_precision
    from unetkit.plan.probe import Candidate, CandidateTrainer
    from unetkit.plan.probe_processes import probe_processes
    from unetkit.train.parallel import MIN_BATCH_PER_PROCESS, usable_cores

    cores = usable_cores()
    n = min(cores, opts.batch // MIN_BATCH_PER_PROCESS)
    cand = Candidate("unet-f16-d4", "unet", {"filters": 16, "depth": 4, "norm": "batch"})
    out: dict[str, Any] = {"model": "unet, 16 filters, depth 4, batch norm (fit's CPU default)",
                           "batch": opts.batch, "size": list(opts.size), "processes": n}
    if n < 2:
        return {**out, "skipped": f"{cores} core(s), batch {opts.batch}: nothing to split"}
    batches = [make_batch(opts.batch, opts.size, 10 * k) for k in range(PROCESS_STEPS + 1)]
    make = functools.partial(CandidateTrainer, cand, 3, 1, 2, device,
                             resolve_precision(opts.precision, device))
    trainer, before = make(), torch.get_num_threads()
    try:  # one process before and after the processes: slow drifts hit both alike
        first = {t: _one_process_ips(trainer, batches, t) for t in (1, cores)}
        probe = probe_processes(make, batches, n, cores, quiet=opts.quiet)
        one = {t: (v + _one_process_ips(trainer, batches, t)) / 2 for t, v in first.items()}
    finally:
        torch.set_num_threads(before)
    for t, v in one.items():
        out[f"1_process_{t}_thread{'s' if t > 1 else ''}_ips"] = sig(v)
    if "train_images_per_s" not in probe:
        return {**out, "error": probe.get("error") or probe.get("skipped")}
    out[f"{n}_processes_ips"] = sig(probe["train_images_per_s"])
    out["threads_each"] = probe["threads_each"]
    out["batch_per_process"] = probe["batch_per_process"]
    out["startup_s"] = probe["startup_s"]
    out[f"ratio_{n}_processes_vs_best_1_process"] = ratio(probe["train_images_per_s"],
                                                          max(one.values()))
    return out
