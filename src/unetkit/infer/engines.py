"""Which engine maps a normalised batch to logits: PyTorch, onnxruntime or OpenVINO.

`Predictor` asks here rather than importing the ONNX module itself, so predict and export
depend on each other in one direction only (predict -> engines -> onnx); a further engine
is added here and in its own module (infer/openvino_engine.py), not in predict.py. Every
engine but torch is an `OnnxEngine`: a callable batch -> logits built from unetkit's ONNX
export, whose graph divides by the artifact's temperature, so all engines give the same
calibrated probabilities through the same tiling, TTA and thresholding. `predict --engine
auto` (infer/engine_auto.py) chooses among the candidates below by measurement.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from unetkit.config import PRECISIONS as TORCH_PRECISIONS
from unetkit.device import cpu_has_bf16
from unetkit.errors import UsageError
from unetkit.infer.onnx import ENGINES, OnnxEngine, check_engine, load_for_engine, make_session

__all__ = ["ENGINES", "OnnxEngine", "check_engine", "load_for_engine", "onnx_runner"]

CHOICES = ("auto", "torch", "onnx", "openvino")  # what `predict --engine` takes
INT8 = "int8"
PRECISIONS = (*TORCH_PRECISIONS, INT8)  # what `predict --precision` takes


def is_session(obj: Any) -> bool:
    """An onnxruntime InferenceSession (of a `unetkit export` file)."""
    return hasattr(obj, "get_modelmeta") and hasattr(obj, "run")


def onnx_runner(model: Any, engine: str = "torch") -> OnnxEngine | None:
    """The onnxruntime runner for `model`, or None when PyTorch runs it.

    A session or OnnxEngine always runs on onnxruntime; a PyTorch model does when `engine`
    is "onnx" (it is exported in memory and verified first).
    """
    check_engine(engine)
    if isinstance(model, OnnxEngine):
        return model
    if is_session(model):
        return OnnxEngine(model)
    return OnnxEngine.from_module(model) if engine == "onnx" else None


def check_choice(engine: str, precision: str) -> None:
    """One sentence for an engine or precision that does not exist or does not combine."""
    if engine not in CHOICES:
        raise UsageError(f"--engine {engine!r} is unknown; use {', '.join(CHOICES)}.")
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r} is unknown; use {', '.join(PRECISIONS)}.")
    if precision == INT8 and engine == "torch":
        raise UsageError("--precision int8 runs on --engine onnx, openvino or auto; the torch "
                         "engine runs 32, bf16-mixed or 16-mixed.")
    if engine == "onnx" and precision in ("bf16-mixed", "16-mixed"):
        raise UsageError(f"--engine onnx runs 32 or int8, not --precision {precision}.")
    if engine in ("openvino", "auto") and precision == "16-mixed":
        raise UsageError(f"--engine {engine} runs 32, bf16-mixed or int8 on the CPU, not "
                         "--precision 16-mixed (a CUDA precision of --engine torch).")


def candidates(precision: str = "auto", openvino: bool = True) -> list[tuple[str, str]]:
    """(engine, precision) pairs `--engine auto` may choose among on this CPU: bf16 only where
    the CPU runs it natively, OpenVINO only when installed; `precision` other than auto keeps
    only that precision."""
    pairs = [("torch", "32"), ("onnx", "32"), ("onnx", INT8)]
    if openvino:
        pairs += [("openvino", "32"), ("openvino", INT8)]
    if cpu_has_bf16():
        pairs += [("torch", "bf16-mixed")] + ([("openvino", "bf16-mixed")] if openvino else [])
    return [p for p in pairs if precision in ("auto", p[1])]


def explicit_precision(engine: str, precision: str) -> str:
    """The precision an explicitly named engine runs at: "auto" is what predict runs where
    the CPU has native bf16 (torch, openvino), float32 on onnxruntime."""
    if precision != "auto":
        return precision
    if engine == "onnx":
        return "32"
    return "bf16-mixed" if cpu_has_bf16() else "32"


def build_runner(model: nn.Module, engine: str, precision: str, graph: bytes | None = None
                 ) -> OnnxEngine | None:
    """The runner of a PyTorch model for (engine, precision): None for torch (Predictor runs
    the model), else an OnnxEngine on `graph` (ONNX bytes: float32, or the int8 model for
    int8; exported here, verified, when not given)."""
    if engine == "torch":
        return None
    if graph is None:
        if precision == INT8:
            raise ValueError("the int8 engines need the quantised model")
        from unetkit.infer.onnx import export_onnx

        graph = export_onnx(model).data
    if engine == "onnx":
        return OnnxEngine(make_session(graph, cpu_only=True))
    from unetkit.infer.openvino_engine import OpenVinoEngine

    return OpenVinoEngine(graph, precision)
