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

import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unetkit.models.fold import conv_bn_pairs, fold_batchnorm  # noqa: F401  (re-exported)


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
