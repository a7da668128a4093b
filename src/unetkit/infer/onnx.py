"""Export a model to ONNX, and run an exported model on onnxruntime.

The exported graph maps a normalised float32 batch (N×C×H×W: pixels / 255, then
(x - mean) / std per channel, the statistics stored in the file's metadata) to logits
(N×K×H×W; K = 1 with a sigmoid for binary models, else a softmax over K classes), divided by
the artifact's calibration temperature when it has one (metadata "temperature"), so
onnxruntime's probabilities are the calibrated ones PyTorch's Predictor gives. Batch,
height and width are dynamic: same-padding models pad internally to a multiple of 2^depth
(32 for the pretrained encoders), and that padding is traced from an input that needs it,
so the graph pads and crops for any size. Valid-padding models (unet-valid) are dynamic too
and accept the sizes the PyTorch model accepts (the output is smaller by 2 × margin).

The metadata (`metadata_props`) carries what inference needs besides the graph: the
normalisation, class names, training input size and scale, whether the task is binary, the
model's geometry (padding multiple, pooling grid, valid padding), the unetkit version and the
whole config.json of the artifact.

`OnnxEngine` is the onnxruntime counterpart of a model's forward: it maps a normalised
torch batch to logits and declares the exported model's geometry, so `Predictor` keeps one
predict path for both engines (infer/engines.py picks the engine; this module never imports
predict).
"""

from __future__ import annotations

import copy
import importlib.metadata
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unetkit.errors import UnetkitError, UsageError
from unetkit.infer.preprocess import model_input
from unetkit.models.geometry import Geometry, geometry_of

ENGINES = ("torch", "onnx")
OPSET = 17
TOLERANCE = 1e-4
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
ONNX_NAME = "model.onnx"
DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}


def _version() -> str:
    """The installed unetkit's version (the package's front door is not imported here)."""
    try:
        return importlib.metadata.version("unetkit")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine!r} is unknown; use torch or onnx.")


def _valid_sizes(geometry: Geometry) -> tuple[int, int]:
    """Two small, different input sizes a valid-padding model accepts."""
    first = geometry.nearest_valid_sizes(1)[1]
    return first, geometry.nearest_valid_sizes(first + 1)[1]


def _trace_shape(model: nn.Module, channels: int, second: bool = False) -> tuple[int, ...]:
    """An input shape to trace (or, with `second`, to verify) the export with.

    Same-padding models trace at sizes that need padding on both axes (so the padding is in
    the graph) and verify at other, odd sizes, so a graph frozen to one size fails the check.
    """
    geometry = geometry_of(model)
    if geometry.valid_padding:
        a, b = _valid_sizes(geometry)
        return (2, channels, b, a) if second else (1, channels, a, b)
    m = geometry.pad_multiple
    return (2, channels, 3 * m - 3, m + 5) if second else (1, channels, 2 * m + 1, 3 * m + 1)


def model_config(model: nn.Module) -> dict[str, Any]:
    """The artifact's config.json for a model built by unetkit (as save_model writes it)."""
    from unetkit.models.artifact import artifact_config

    return artifact_config(model, what="exported")


def _metadata(model: nn.Module, config: dict[str, Any]) -> dict[str, str]:
    binary = bool(config.get("binary", True))
    geometry = geometry_of(model)
    return {
        "producer": "unetkit",
        "unetkit_version": _version(),
        "inputs": f"{INPUT_NAME}: float32 N x C x H x W, pixels / 255, then (x - mean) / std",
        "outputs": "logits",
        "activation": "sigmoid" if binary else "softmax",
        "normalization": json.dumps(config.get("normalization")),
        "class_names": json.dumps(config.get("class_names")),
        "input_size": json.dumps(config.get("input_size")),
        "scale": json.dumps(config.get("scale", 1.0)),
        "binary": json.dumps(binary),
        "in_channels": str(int(config.get("in_channels", 3))),
        "pad_multiple": str(geometry.pad_multiple),
        "pooling_grid": str(geometry.pooling_grid),
        "valid_padding": json.dumps(geometry.valid_padding),
        "valid_depth": str(geometry.depth),
        "dynamic_axes": "batch,height,width",
        "config": json.dumps(config),
    }


def read_metadata(source: Any) -> dict[str, str]:
    """The metadata_props of an .onnx file (path or bytes) or an onnxruntime session."""
    if hasattr(source, "get_modelmeta"):
        return dict(source.get_modelmeta().custom_metadata_map)
    import onnx

    proto = onnx.load_from_string(source) if isinstance(source, bytes) else \
        onnx.load(str(source), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


@dataclass
class ExportResult:
    data: bytes
    metadata: dict[str, str]
    max_abs_diff: float  # logits, random input at a size other than the traced one
    image_max_abs_diff: float | None = None  # logits, the given real image
    precision: str = "32"  # PyTorch's precision in the mask comparison below
    image_mask_agreement: float | None = None  # PyTorch at `precision` vs ONNX, that image
    dynamic: bool = True
    notes: list[str] = field(default_factory=list)


def _torch_logits(model: nn.Module, x: torch.Tensor, precision: str = "32") -> np.ndarray:
    from unetkit.device import autocast_context

    with torch.inference_mode(), autocast_context(torch.device("cpu"), precision):
        return model(x).float().numpy()


def _masks(logits: np.ndarray) -> np.ndarray:
    return logits[:, 0] > 0 if logits.shape[1] == 1 else logits.argmax(1)


def image_input(model: nn.Module, image: np.ndarray, name: str) -> torch.Tensor:
    """A real image as the model sees it: normalised, at the working scale (and, for valid
    models, centre-cropped to the largest size the model accepts)."""
    x = model_input(image, dict(getattr(model, "unetkit_meta", None) or {}), name)[0]
    geometry = geometry_of(model)
    if geometry.valid_padding:
        wh, ww = x.shape[-2:]
        sizes = [geometry.nearest_valid_sizes(int(s))[0] for s in (wh, ww)]
        if None in sizes:
            raise UnetkitError(f"{name} is too small to check a unet-valid export on.")
        top, left = (wh - sizes[0]) // 2, (ww - sizes[1]) // 2
        x = x[:, top:top + sizes[0], left:left + sizes[1]]
    return x[None].contiguous()


def _traced(net: nn.Module, dummy: torch.Tensor, opset: int, metadata: dict[str, str],
            name: str) -> bytes:
    """The checked ONNX bytes of `net` traced at `dummy`'s shape, with `metadata`."""
    import onnx

    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings: shape arithmetic is traced
            torch.onnx.export(net, (dummy,), buf, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: DYNAMIC_AXES,
                                            OUTPUT_NAME: DYNAMIC_AXES},
                              do_constant_folding=True)
    except UnetkitError:
        raise
    except Exception as exc:
        reason = str(exc).strip().split("\n")[0]
        raise UnetkitError(f"ONNX export of {name} failed "
                           f"({type(exc).__name__}: {reason}).") from exc
    proto = onnx.load_from_string(buf.getvalue())
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = (f"unetkit {_version()} export of {name}: normalised "
                        f"images in, logits out; see metadata_props.")
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


class TemperatureScaled(nn.Module):
    """`net`'s logits divided by a fixed temperature: the calibrated graph that is exported."""

    def __init__(self, net: nn.Module, temperature: float) -> None:
        super().__init__()
        self.net, self.temperature = net, float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) / self.temperature


def export_onnx(model: nn.Module, opset: int = OPSET, check_image: np.ndarray | None = None,
                image_name: str = "the check image", tolerance: float = TOLERANCE,
                seed: int = 0, precision: str = "auto", calibrated: bool = True
                ) -> ExportResult:
    """Export to ONNX bytes with metadata and verify them against PyTorch.

    Raises UnetkitError when onnxruntime's logits differ from float32 PyTorch's by more than
    `tolerance` (max abs) on a random batch at a size other than the traced one, or on
    `check_image` (HxWxC uint8) when given. The graph is float32; with `check_image`, the
    share of pixels whose mask agrees between PyTorch at `precision` ("auto": 32) and the
    export is reported too. Nothing is written; see `write_onnx`. With `calibrated` (the
    default) the graph divides the logits by the artifact's temperature, and PyTorch is
    checked with the same division; without it the graph gives the raw logits.
    """
    from unetkit.device import resolve_precision
    from unetkit.models.artifact import temperature_of

    arch = getattr(model, "unetkit_arch", {}) or {}
    if arch.get("name") == "unet3d":
        raise UsageError("ONNX export covers the 2-D models; unet3d is not supported yet.")
    config = model_config(model)
    net = copy.deepcopy(model).float().cpu().eval()
    channels = int(config.get("in_channels", 3))
    dummy = torch.randn(_trace_shape(net, channels), generator=torch.Generator().manual_seed(seed))
    t = temperature_of(config) if calibrated else 1.0
    graph = net if t == 1.0 else TemperatureScaled(net, t).eval()
    metadata = {**_metadata(net, config), "temperature": json.dumps(t)}
    data = _traced(graph, dummy, opset, metadata, arch.get("name", "the model"))
    engine = OnnxEngine(make_session(data, cpu_only=True))
    check = torch.randn(_trace_shape(net, channels, second=True),
                        generator=torch.Generator().manual_seed(seed + 1))
    diff = _max_diff(_torch_logits(graph, check), engine.logits(check), "a random input")
    result = ExportResult(data, metadata, diff,
                          precision=resolve_precision(precision, torch.device("cpu"), "export"))
    if check_image is not None:
        x = image_input(net, check_image, image_name)
        exported = engine.logits(x)
        result.image_max_abs_diff = _max_diff(_torch_logits(graph, x), exported, image_name)
        reference = _masks(_torch_logits(graph, x, result.precision))
        result.image_mask_agreement = float((reference == _masks(exported.numpy())).mean())
    worst = max(diff, result.image_max_abs_diff or 0.0)
    if not worst <= tolerance:
        raise UnetkitError(f"The ONNX export differs from PyTorch by {worst:.3g} (max abs "
                           f"logit difference), more than the {tolerance:g} allowed.")
    return result


def _max_diff(ref: np.ndarray, out: torch.Tensor, what: str) -> float:
    got = out.numpy()
    if got.shape != ref.shape:
        raise UnetkitError(f"The ONNX export returned shape {got.shape} for {what} where "
                           f"PyTorch returns {ref.shape}; the graph is not size-independent.")
    return float(np.abs(got - ref).max()) if ref.size else 0.0


def write_onnx(model: nn.Module, path: str | Path, **options: Any) -> ExportResult:
    """Export, verify, and write `path` atomically (only after the check passed)."""
    from unetkit.io_utils import atomic_write_bytes

    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise UsageError(f"--onnx {path} must name a .onnx file.")
    result = export_onnx(model, **options)
    atomic_write_bytes(path, result.data)
    return result


def providers() -> list[str]:
    """CUDA first when this onnxruntime build and machine have it, then the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    chosen = [p for p in ("CUDAExecutionProvider",) if p in available and torch.cuda.is_available()]
    return [*chosen, "CPUExecutionProvider"]


def make_session(source: str | Path | bytes, cpu_only: bool = False) -> Any:
    """An onnxruntime InferenceSession for a file or bytes, threads as torch is set."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.inter_op_num_threads = 1
    # no busy-waiting between runs: its spinning threads fought PyTorch's for the cores
    # (tiling, thresholding and writing run in PyTorch/NumPy between calls; docs/decisions.md)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    what = "the exported model" if isinstance(source, bytes) else str(source)
    try:
        model = source if isinstance(source, bytes) else str(source)
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]
                                    if cpu_only else providers())
    except Exception as exc:
        reason = str(exc).strip().split("\n")[0]
        raise UnetkitError(f"{what} is not a loadable ONNX model ({reason}).") from exc


class OnnxEngine:
    """Runs an exported model: normalised N×C×H×W torch batch in, logits out.

    Carries `unetkit_meta` (the artifact config minus the architecture) and `geometry` (from
    the export's metadata), like a loaded PyTorch model, so `Predictor` and `evaluate` take
    either. Inputs smaller than the padding multiple are replicate-padded here first, as the
    PyTorch model does (the graph's own padding is the reflect padding every larger input
    gets).
    """

    engine_name = "onnx"  # what Predictor and evaluate record as the engine

    def __init__(self, session: Any) -> None:
        self.session = session
        self.metadata = read_metadata(session)
        try:
            config = json.loads(self.metadata["config"])
        except (KeyError, json.JSONDecodeError) as exc:
            raise UnetkitError("The ONNX model has no unetkit metadata (export it with "
                               "`unetkit export`).") from exc
        self.config = config
        self.unetkit_arch = config.get("architecture", {})
        self.unetkit_meta = {k: v for k, v in config.items()
                             if k not in ("architecture", "format_version")}
        self.geometry = self._geometry()
        self.multiple, self.grid = self.geometry.pad_multiple, self.geometry.pooling_grid
        self.input_name = session.get_inputs()[0].name

    def _geometry(self) -> Geometry:
        """The exported model's geometry, as its metadata records it."""
        multiple = int(self.metadata.get("pad_multiple", "1"))
        valid = bool(json.loads(self.metadata.get("valid_padding", "false")))
        # exports before `valid_depth` was recorded: the architecture's depth option
        depth = int(self.metadata.get("valid_depth") or
                    self.unetkit_arch.get("options", {}).get("depth", 4)) if valid else 0
        return Geometry(multiple, int(self.metadata.get("pooling_grid", multiple)), valid, depth)

    @property
    def precision(self) -> str:
        """"int8" for a quantised export (infer/quantize.py marks it), else "32"."""
        return self.metadata.get("precision", "32")

    def output_margin(self, size: int) -> int:
        """Pixels a valid-padding export loses per side for an input side (0 otherwise)."""
        return self.geometry.output_margin(size)

    @classmethod
    def from_module(cls, model: nn.Module) -> OnnxEngine:
        """Export a PyTorch model in memory (verified) and run it on onnxruntime."""
        return cls(make_session(export_onnx(model).data))

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        h, w = int(batch.shape[-2]), int(batch.shape[-1])
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        padded = bool(ph or pw) and not (ph < h and pw < w)
        if padded:
            batch = F.pad(batch, (0, pw, 0, ph), mode="replicate")
        x = np.ascontiguousarray(batch.detach().float().cpu().numpy())
        try:
            out = self.session.run(None, {self.input_name: x})[0]
        except Exception as exc:
            reason = str(exc).strip().split("\n")[0]
            raise UnetkitError(f"onnxruntime could not run the model on a {h}x{w} input "
                               f"({reason}).") from exc
        logits = torch.from_numpy(out)
        return logits[..., :h, :w] if padded else logits

    __call__ = logits


def load_for_engine(path: str | Path, engine: str = "torch") -> Any:
    """A run or artifact directory -> a PyTorch model (engine torch) or an OnnxEngine.

    For onnx, MODEL/model.onnx (in the artifact directory, as `unetkit export` writes by
    default) is reused when it is newer than the weights and config; otherwise the model is
    exported in memory and verified first.
    """
    from unetkit.models.artifact import find_artifact, load_model

    check_engine(engine)
    if engine == "torch":
        return load_model(path)
    directory = find_artifact(path)
    cached = fresh_export(directory, ONNX_NAME)
    if cached is not None:
        return OnnxEngine(make_session(cached))
    return OnnxEngine.from_module(load_model(directory))


def fresh_export(directory: Path, name: str) -> Path | None:
    """directory/name when it exists and is newer than the artifact's weights and config."""
    from unetkit.models.artifact import CONFIG_NAME, WEIGHTS_NAME

    cached = directory / name
    sources = [directory / WEIGHTS_NAME, directory / CONFIG_NAME]
    if cached.is_file() and all(p.is_file() for p in sources) and \
            cached.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return cached
    return None
