"""Which engine maps a normalised batch to logits: the PyTorch model or onnxruntime.

`Predictor` asks here rather than importing the ONNX module itself, so predict and export
depend on each other in one direction only (predict -> engines -> onnx); a further engine
(TensorRT, OpenVINO, ...) is added here and in its own module, not in predict.py.
"""

from __future__ import annotations

from typing import Any

from unetkit.infer.onnx import ENGINES, OnnxEngine, check_engine, load_for_engine

__all__ = ["ENGINES", "OnnxEngine", "check_engine", "load_for_engine", "onnx_runner"]


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
