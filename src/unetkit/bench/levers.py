"""Inference levers the speed bench tries on unetkit's own models.

Each lever turns an eval-mode model into something `Predictor` runs unchanged, so a lever is
timed through the same predict path as the default:

* `fold_batchnorm`: every BatchNorm that directly follows a convolution is folded into the
  convolution's weights and bias (eval mode only; the BN becomes an identity, or its
  activation for timm's BatchNormAct2d). Found by running the model once with hooks, so it
  works for any architecture whose BN input is exactly a conv output.
* onnxruntime: the model exported by unetkit.infer.onnx (verified against PyTorch) and run
  by `Predictor(engine="onnx")`; `quantize_int8` (unetkit.infer.quantize, what `predict
  --precision int8` runs) makes the int8 variant (static QDQ quantisation calibrated on
  real images, per-channel int8 weights), which Predictor runs as an onnxruntime session
  and, for the OpenVINO levers, as an OpenVinoEngine.
* `Compiled`: torch.compile (inductor, with weight freezing for inference).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from unetkit.infer.quantize import quantize_int8  # noqa: F401  (re-exported: the product's)
from unetkit.models.fold import conv_bn_pairs, fold_batchnorm  # noqa: F401  (re-exported)


def export_bytes(model: nn.Module) -> bytes:
    """The model as verified ONNX bytes, through unetkit's own exporter."""
    from unetkit.infer.onnx import export_onnx

    return export_onnx(model).data


def session(data: bytes) -> Any:
    from unetkit.infer.onnx import make_session

    return make_session(data, cpu_only=True)


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
