"""Inference levers the speed bench tries on unetkit's own models.

Each lever turns an eval-mode model into something `Predictor` runs unchanged, so a lever is
timed through the same predict path as the default:

* `fold_batchnorm`: every BatchNorm that directly follows a convolution is folded into the
  convolution's weights and bias (eval mode only; the BN becomes an identity, or its
  activation for timm's BatchNormAct2d). Found by running the model once with hooks, so it
  works for any architecture whose BN input is exactly a conv output.
* onnxruntime: the model exported by unetkit.infer.onnx (verified against PyTorch) and run
  by `Predictor(engine="onnx")`; `quantize_int8` makes the int8 variant (static QDQ
  quantisation calibrated on real images, per-channel int8 weights), which Predictor runs
  as an onnxruntime session.
* `Compiled`: torch.compile (inductor, with weight freezing for inference).
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(conv name, bn name) for each BatchNorm2d whose input is exactly a Conv2d's output."""
    convs: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []
    keep: list[torch.Tensor] = []  # keep tensors alive so their ids stay unique
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d) and not isinstance(mod, nn.ConvTranspose2d):
            def conv_hook(_m: nn.Module, _inp: Any, out: torch.Tensor, name: str = name) -> None:
                convs[id(out)] = name
                keep.append(out)
            hooks.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.BatchNorm2d):
            def bn_hook(_m: nn.Module, inp: Any, _out: Any, name: str = name) -> None:
                conv = convs.get(id(inp[0]))
                if conv is not None:
                    pairs.append((conv, name))
                keep.append(inp[0])
            hooks.append(mod.register_forward_pre_hook(
                lambda m, inp, name=name: bn_hook(m, inp, None, name)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    seen_conv = [c for c, _ in pairs]
    # a conv feeding two BNs (or called twice) cannot be folded into either
    return [(c, b) for c, b in dict.fromkeys(pairs) if seen_conv.count(c) == 1]


def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, int, int]:
    """An eval-mode copy with Conv+BN folded; returns (copy, pairs folded, BN layers)."""
    model = copy.deepcopy(model).eval()
    total = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    folded = 0
    for conv_name, bn_name in conv_bn_pairs(model, example):
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        if not bn.track_running_stats or bn.running_mean is None:
            continue
        replacement: nn.Module
        if type(bn) is nn.BatchNorm2d:
            replacement = nn.Identity()
        elif hasattr(bn, "act") and hasattr(bn, "drop"):  # timm BatchNormAct2d
            replacement = nn.Sequential(bn.drop, bn.act)
        else:
            continue
        _set_module(model, conv_name, fuse_conv_bn_eval(conv, bn))
        _set_module(model, bn_name, replacement)
        folded += 1
    for attr in ("unetkit_meta", "unetkit_arch", "input_normalization"):
        if hasattr(model, attr):
            setattr(model, attr, copy.deepcopy(getattr(model, attr)))
    return model, folded, total


def export_bytes(model: nn.Module) -> bytes:
    """The model as verified ONNX bytes, through unetkit's own exporter."""
    from unetkit.infer.onnx import export_onnx

    return export_onnx(model).data


def session(data: bytes) -> Any:
    from unetkit.infer.onnx import make_session

    return make_session(data, cpu_only=True)


def quantize_int8(data: bytes, calibration: list[torch.Tensor]) -> bytes:
    """Static int8 (QDQ) quantisation of ONNX bytes, calibrated on normalised batches.

    Weights int8 per channel, activations uint8; `reduce_range` avoids the saturation of
    the u8s8 instructions on CPUs without VNNI (AVX2 only).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": np.ascontiguousarray(b.numpy())} for b in calibration])

        def get_next(self) -> dict | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src, pre, dst = Path(tmp, "m.onnx"), Path(tmp, "p.onnx"), Path(tmp, "q.onnx")
        src.write_bytes(data)
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 — pre-processing only helps; quantise the original
            pre = src
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, reduce_range=True)
        return _with_metadata(dst.read_bytes(), data)


def _with_metadata(data: bytes, source: bytes) -> bytes:
    """`data` with the unetkit metadata_props of `source` (what OnnxEngine reads)."""
    import onnx

    proto, src = onnx.load_from_string(data), onnx.load_from_string(source)
    have = {p.key for p in proto.metadata_props}
    for p in src.metadata_props:
        if p.key not in have:
            entry = proto.metadata_props.add()
            entry.key, entry.value = p.key, p.value
    return proto.SerializeToString()


class Compiled(nn.Module):
    """torch.compile (inductor) of a model; `freeze` folds the weights in as constants
    (inference only). Compilation happens on the first call, for each new input shape."""

    def __init__(self, model: nn.Module, freeze: bool) -> None:
        super().__init__()
        self.inner = model
        self.compiled = torch.compile(model)
        self.freeze = freeze
        for attr in ("unetkit_meta", "unetkit_arch"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch._inductor.config as inductor_config

        with inductor_config.patch(freezing=self.freeze):
            return self.compiled(x)
