"""Inference levers of the speed bench: each one built from the trained model and run
through unetkit's Predictor (or, for the baseline, plain fp32 eager), with a note saying what
it is. `speed.run_family` times them interleaved and checks their masks."""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from unetkit.bench.measure import Variant
from unetkit.bench.runners import eager_probs, predictor_forward
from unetkit.device import cpu_has_bf16

Forward = Callable[[torch.Tensor], torch.Tensor]
OPENVINO_LEVERS = {"openvino": "32", "openvino_bf16": "bf16-mixed", "openvino_int8": "int8"}
CPU_ONLY = ("onnxruntime", "onnxruntime_int8", *OPENVINO_LEVERS)


def build_lever(name: str, trained: nn.Module, device: torch.device, example: torch.Tensor,
                calib: list[torch.Tensor]) -> tuple[Forward, str] | None:
    """(forward on a normalised batch, note) for one lever; None for an unknown name."""
    from unetkit.bench import levers

    if name == "nchw":
        net = copy.deepcopy(trained).eval()
        return (lambda x: eager_probs(net, x),
                "unetkit model, fp32 eager NCHW under inference_mode")
    if name == "channels_last_model":
        net = copy.deepcopy(trained).to(memory_format=torch.channels_last)
        return (predictor_forward(net, device), "Predictor with model.to(memory_format="
                "torch.channels_last): weights in the inputs' layout")
    if name in ("bn_fold", "bn_fold_channels_last_model"):
        net, folded, total = levers.fold_batchnorm(trained, example[:1].to(device))
        note = f"{folded} of {total} BatchNorm layers folded into their conv, through Predictor"
        if name == "bn_fold_channels_last_model":
            net = net.to(memory_format=torch.channels_last)
            note += ", model.to(memory_format=torch.channels_last)"
        return predictor_forward(net, device), note
    if name == "onnxruntime":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fwd = predictor_forward(copy.deepcopy(trained), device, engine="onnx")
        return fwd, "Predictor(engine='onnx'): unetkit.infer.onnx export, onnxruntime CPU"
    if name == "onnxruntime_int8":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = levers.quantize_int8(levers.export_bytes(trained), calib)
        return (predictor_forward(levers.session(data), device),
                "static int8 QDQ (per-channel weights, uint8 activations, reduce_range), "
                f"calibrated on {len(calib)} batches, run by Predictor on the onnxruntime "
                "session")
    if name in OPENVINO_LEVERS:
        return _openvino_lever(OPENVINO_LEVERS[name], trained, device, calib)
    if name == "compile":
        net = levers.Compiled(copy.deepcopy(trained).eval(), freeze=True)
        return (predictor_forward(net, device),
                "torch.compile inductor, freezing; compile time in warmup_s")
    if name == "bf16":
        return (predictor_forward(copy.deepcopy(trained), device, "bf16-mixed"),
                "Predictor with precision bf16-mixed (autocast)")
    return None


def _openvino_lever(precision: str, trained: nn.Module, device: torch.device,
                    calib: list[torch.Tensor]) -> tuple[Forward, str]:
    """unetkit's OpenVINO engine (infer/openvino_engine.py) on the export or its int8 model."""
    from unetkit.bench import levers
    from unetkit.infer.engines import build_runner

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = levers.export_bytes(trained)
        if precision == "int8":
            data = levers.quantize_int8(data, calib)
    note = {"32": "INFERENCE_PRECISION_HINT f32", "bf16-mixed": "INFERENCE_PRECISION_HINT bf16",
            "int8": f"the onnxruntime_int8 lever's QDQ model (calibrated on {len(calib)} "
                    "batches), f32 elsewhere"}[precision]
    return (predictor_forward(build_runner(trained, "openvino", precision, data), device),
            f"Predictor on unetkit's OpenVinoEngine (CPU plugin), {note}")


def lever_variants(fam: Any, trained: nn.Module, device: torch.device, x: torch.Tensor,
                   calib: list[torch.Tensor], opts: Any
                   ) -> tuple[list[Variant], dict[str, dict[str, Any]]]:
    """The family's inference levers as timed variants, and what each took to set up (or
    why it could not be built)."""
    out: list[Variant] = []
    info: dict[str, dict[str, Any]] = {}
    for name in fam.infer_levers:
        if (name == "compile" and not opts.compile) or \
                (name in CPU_ONLY and device.type != "cpu") or \
                (name == "openvino_bf16" and not cpu_has_bf16()):
            continue
        t0 = time.perf_counter()
        try:
            built = build_lever(name, trained, device, x, calib)
        except Exception as exc:  # noqa: BLE001 — a lever that cannot be built is reported
            info[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
            continue
        if built is None:
            continue
        fwd, note = built
        info[name] = {"note": note, "setup_s": round(time.perf_counter() - t0, 2)}
        out.append(Variant(name, lambda fwd=fwd: fwd(x), x.shape[0]))
    return out, info
