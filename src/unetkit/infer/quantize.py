"""Static int8 quantisation of an exported model, calibrated on the run's training images.

The int8 model is the float32 export (infer/onnx.py: verified against PyTorch, temperature
built into the graph) with QDQ quantise/dequantise pairs inserted by onnxruntime's
`quantize_static`: int8 weights per output channel, uint8 activations whose ranges come
from running real training images through the float graph. onnxruntime runs it with its
int8 kernels and OpenVINO reads the same file (infer/openvino_engine.py), so one quantised
model serves both engines. `reduce_range` (7-bit weights) avoids the saturation of the u8s8
instructions on CPUs without VNNI; on VNNI CPUs it costs nothing measurable in agreement.
Whether the result is good enough is not decided here: infer/engine_auto.py compares its
masks with float32 PyTorch's on the run's validation images.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unetkit.infer.onnx import export_onnx, image_input

INT8_NAME = "model.int8.onnx"  # beside model.onnx in the artifact; reused while up to date
CALIBRATION_BATCHES = 16
CALIBRATION_SIDE = 256  # crops: activation ranges need the content, not the whole image


def quantize_int8(data: bytes, calibration: list[torch.Tensor]) -> bytes:
    """Static int8 (QDQ) quantisation of ONNX bytes, calibrated on normalised batches.

    Weights int8 per channel, activations uint8; the source's unetkit metadata is kept and
    marked `precision: int8`, so engines built on the result know what they run.
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
                        weight_type=QuantType.QInt8, reduce_range=True,
                        nodes_to_exclude=_head_nodes(pre))
        return _with_metadata(dst.read_bytes(), data, len(calibration))


def _head_nodes(path: Path) -> list[str]:
    """The last convolution and what follows it (crop, temperature): left in float, so the
    logits keep their resolution around the threshold. Quantised to uint8, logits within half
    a step of 0 all became exactly 0, which engines then put on either side of the mask."""
    import onnx

    nodes = onnx.load(str(path), load_external_data=False).graph.node
    convs = [i for i, n in enumerate(nodes) if n.op_type in ("Conv", "ConvTranspose")]
    return [n.name for n in nodes[convs[-1]:] if n.name] if convs else []


def _with_metadata(data: bytes, source: bytes, batches: int) -> bytes:
    """`data` with the unetkit metadata_props of `source` (what OnnxEngine reads)."""
    import onnx

    proto, src = onnx.load_from_string(data), onnx.load_from_string(source)
    values = {p.key: p.value for p in src.metadata_props}
    values.update(precision="int8", quantization=json.dumps(
        {"method": "static QDQ", "weights": "int8 per channel", "activations": "uint8",
         "reduce_range": True, "calibration_batches": batches}))
    del proto.metadata_props[:]
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def calibration_inputs(model: nn.Module, images: list[np.ndarray],
                       batches: int = CALIBRATION_BATCHES, seed: int = 0) -> list[torch.Tensor]:
    """`batches` normalised 1×C×h×w inputs: seeded crops (at most CALIBRATION_SIDE a side) of
    the images in turn, each prepared as predict prepares an image (scale, normalisation)."""
    if not images:
        raise ValueError("calibration needs at least one image")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(batches):
        image = images[i % len(images)]
        h, w = image.shape[:2]
        ch, cw = min(h, CALIBRATION_SIDE), min(w, CALIBRATION_SIDE)
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out.append(image_input(model, image[top:top + ch, left:left + cw],
                               f"calibration image {i % len(images)}"))
    return out


def int8_bytes(model: nn.Module, images: list[np.ndarray], opset: int | None = None) -> bytes:
    """The int8 model of a PyTorch model: verified float32 export, then quantised on
    calibration crops of `images` (the run's training images)."""
    export = export_onnx(model) if opset is None else export_onnx(model, opset=opset)
    return quantize_int8(export.data, calibration_inputs(model, images))
