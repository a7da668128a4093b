"""`unetkit bench precision`: how far bf16 masks are from float32 ones, and how much faster.

The measurement behind predict's default precision: for a trained model and a folder of
images, the share of pixels whose predicted class is the same in bf16-mixed and float32, the
largest probability difference, and the time of each (interleaved, in one run). bf16 is
emulated where the CPU has no native support (slow, but the agreement is the same).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetkit.bench.measure import sig
from unetkit.device import cpu_flags, cpu_has_bf16, cpu_model, pick_device


def run_precision(model_path: Path, inputs: list[str], limit: int = 20,
                  quiet: bool = False) -> dict[str, Any]:
    from unetkit.data.readers import read_image
    from unetkit.infer.batch import expand_inputs
    from unetkit.infer.onnx import load_for_engine
    from unetkit.infer.predict import Predictor
    from unetkit.progress import progress

    net = load_for_engine(model_path, "torch")
    paths = expand_inputs(inputs)[:limit]
    fp32 = Predictor(net, precision="32")
    bf16 = Predictor(net, precision="bf16-mixed")
    same = total = 0
    worst_image, max_diff = 1.0, 0.0
    seconds = {"32": 0.0, "bf16-mixed": 0.0}
    for path in progress(paths, total=len(paths), desc="bf16 vs fp32", disable=quiet):
        image = read_image(path)
        probs = {}
        for p in (fp32, bf16):
            t0 = time.perf_counter()
            probs[p.precision] = p.probabilities(image, str(path))
            seconds[p.precision] += time.perf_counter() - t0
        a = fp32.mask_from_probabilities(probs["32"])
        b = bf16.mask_from_probabilities(probs["bf16-mixed"])
        agree = int((a == b).sum())
        same, total = same + agree, total + a.size
        worst_image = min(worst_image, agree / a.size)
        max_diff = max(max_diff, float(np.abs(probs["32"] - probs["bf16-mixed"]).max()))
    device = pick_device()
    return {"model": str(model_path), "images": len(paths), "pixels": total,
            "mask_agreement": sig(same / max(total, 1), 6),
            "worst_image_agreement": sig(worst_image, 6),
            "max_probability_difference": sig(max_diff),
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
            "speed_ratio_bf16_vs_32": round(seconds["32"] / seconds["bf16-mixed"], 3)
            if seconds["bf16-mixed"] else None,
            "device": device.type, "native_bf16": cpu_has_bf16() if device.type == "cpu"
            else bool(torch.cuda.is_bf16_supported()),
            "cpu": cpu_model(), "cpu_flags": cpu_flags(), "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def format_precision(r: dict[str, Any]) -> str:
    return (f"bf16-mixed vs float32 on {r['images']} image(s) of {r['model']} "
            f"({r['cpu']}, native bf16: {r['native_bf16']}):\n"
            f"  masks agree on {100 * r['mask_agreement']:.4f}% of pixels (worst image "
            f"{100 * r['worst_image_agreement']:.4f}%), max probability difference "
            f"{r['max_probability_difference']:.3g}\n"
            f"  time: float32 {r['seconds']['32']:.2f} s, bf16 {r['seconds']['bf16-mixed']:.2f}"
            f" s (bf16 {r['speed_ratio_bf16_vs_32']}x the speed of float32)")
