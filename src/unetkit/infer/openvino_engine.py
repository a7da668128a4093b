"""OpenVINO as an engine: the exported ONNX graph (float32 or the int8 QDQ model) compiled for
the CPU by OpenVINO, which fuses and picks kernels for the instruction sets it finds.

OpenVINO reads unetkit's ONNX bytes directly, so the graph (temperature included), its
metadata and the QDQ int8 model are the ones onnxruntime runs. `OpenVinoSession` offers the
part of onnxruntime's InferenceSession that `OnnxEngine` uses (run, get_inputs,
get_modelmeta), so `OpenVinoEngine` is an OnnxEngine: the same metadata, geometry and padding
of small inputs, and `Predictor` keeps one predict path. Precision is OpenVINO's
INFERENCE_PRECISION_HINT: f32 is asked for explicitly (on CPUs with AMX OpenVINO would
otherwise pick bf16 itself), bf16 is offered only where the CPU runs it natively
(unetkit.device.cpu_has_bf16), and int8 is the quantised model with f32 for what stays float.
OpenVINO is an optional extra: `pip install 'unetkit[openvino]'`.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from unetkit.errors import UnetkitError, UsageError
from unetkit.infer.onnx import INPUT_NAME, OnnxEngine, read_metadata

INSTALL = "pip install 'unetkit[openvino]'"
HINTS = {"32": "f32", "bf16-mixed": "bf16", "int8": "f32"}


def require_openvino() -> Any:
    """The openvino module, or a one-sentence UsageError saying how to install it."""
    try:
        import openvino
    except ImportError as exc:
        raise UsageError(f"--engine openvino needs OpenVINO, which is not installed here; "
                         f"install it with {INSTALL}.") from exc
    return openvino


def openvino_available() -> bool:
    try:
        require_openvino()
    except UsageError:
        return False
    return True


class OpenVinoSession:
    """An OpenVINO compiled model behind the InferenceSession calls OnnxEngine makes."""

    def __init__(self, data: bytes, hint: str) -> None:
        ov = require_openvino()
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": max(1, torch.get_num_threads())}
        # OpenVINO may read the model's constants from these buffers in place: they must
        # live as long as the compiled model, or it reads freed memory
        self._buffers = (data, np.empty(0, dtype=np.uint8))
        try:
            model = core.read_model(data, ov.Tensor(self._buffers[1]))
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:
            reason = str(exc).strip().split("\n")[0]
            raise UnetkitError(f"OpenVINO could not compile the exported model ({reason}).") \
                from exc
        self.metadata = read_metadata(data)

    def get_modelmeta(self) -> SimpleNamespace:
        return SimpleNamespace(custom_metadata_map=dict(self.metadata))

    def get_inputs(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(name=INPUT_NAME)]

    def run(self, _outputs: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [self.compiled(feeds[INPUT_NAME])[0]]


class OpenVinoEngine(OnnxEngine):
    """unetkit's ONNX export (float32 or int8) run by OpenVINO on the CPU at `precision`
    ("32", "bf16-mixed"; "int8" needs the quantised bytes)."""

    engine_name = "openvino"

    def __init__(self, data: bytes, precision: str = "32") -> None:
        quantised = read_metadata(data).get("precision") == "int8"
        if (precision == "int8") != quantised or precision not in HINTS:
            raise ValueError(f"precision {precision!r} does not match the model given")
        super().__init__(OpenVinoSession(data, HINTS[precision]))
        self._precision = precision

    @property
    def precision(self) -> str:
        return self._precision
