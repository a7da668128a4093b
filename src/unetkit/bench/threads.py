"""Whether a second intra-op thread speeds up unetkit's steps on this machine."""

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
