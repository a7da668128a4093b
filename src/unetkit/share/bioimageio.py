"""Package a model as a BioImage Model Zoo model (bioimageio.spec 0.5, `rdf.yaml` in a zip).

The package describes the model in the spec's own terms: the input is the image's pixel
values (0-255, float32, N×C×H×W, H and W any multiple of the model's padding multiple),
preprocessed by `scale_linear` (gain 1/255) then `fixed_zero_mean_unit_variance` with the
artifact's per-channel mean and std; the weights (ONNX, TorchScript where tracing is
size-independent, and a pytorch_state_dict built by `unetkit.models.registry.build_model`)
map that to logits, and postprocessing (`sigmoid` for a binary model, `softmax` over the
channel axis otherwise) makes them probabilities, after a `scale_linear` (gain 1/T) when `fit`
calibrated the model (all weight formats stay the raw network). The test input/output tensors
are computed with the exported ONNX weights; the cover is the test image beside its mask.

The description is built with bioimageio.spec's classes and written with its own
`save_bioimageio_package`; nothing here writes YAML by hand. bioimageio.spec is an optional
extra (`pip install 'unetkit[bioimageio]'`).
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unetkit.errors import UnetkitError, UsageError
from unetkit.models.artifact import temperature_of

EXTRA_HINT = "install the bioimageio extra: pip install 'unetkit[bioimageio]'"
DEFAULT_LICENSE = "MIT"
UNET_CITATION = ("Ronneberger, Fischer and Brox. U-Net: Convolutional Networks for Biomedical "
                 "Image Segmentation. MICCAI 2015.", "10.1007/978-3-319-24574-4_28")
INPUT_ID, OUTPUT_ID = "input", "probabilities"


@dataclass
class BioimageioResult:
    path: Path
    weight_formats: list[str]
    notes: list[str] = field(default_factory=list)


def _spec() -> Any:
    """The bioimageio.spec v0_5 model module, or the one-sentence hint when it is absent."""
    try:
        from bioimageio.spec.model import v0_5
    except ImportError as exc:
        raise UnetkitError(EXTRA_HINT) from exc
    return v0_5


def read_meta(path: str | Path | None) -> dict[str, Any]:
    """The optional --bioimageio-meta YAML (authors, license, cite, name, description, tags)."""
    if path is None:
        return {}
    import yaml

    try:
        meta = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"--bioimageio-meta {path} is not a readable YAML file ({exc}).") from exc
    if not isinstance(meta, dict):
        raise UsageError(f"--bioimageio-meta {path} must hold a mapping (authors, license, ...).")
    return meta


def _synthetic_image(h: int, w: int, channels: int) -> np.ndarray:
    """A smooth, deterministic H×W×C uint8 test image (when no image is given)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    noise = rng.normal(size=(h // 4 + 2, w // 4 + 2, channels)) * 60 + 128
    planes = [np.asarray(Image.fromarray(np.uint8(np.clip(noise[..., c], 0, 255)))
                         .resize((w, h), Image.BILINEAR)) for c in range(channels)]
    return np.stack(planes, -1)


def _test_input(net: nn.Module, config: dict[str, Any], image: np.ndarray | None,
                name: str) -> np.ndarray:
    """1×C×H×W float32 pixel values (0-255) at the working scale, H and W multiples of the
    padding multiple (the package's test input, before its preprocessing)."""
    from unetkit.infer.preprocess import model_input, normalization
    from unetkit.models.geometry import geometry_of

    m = geometry_of(net).pad_multiple
    channels = int(config.get("in_channels", 3))
    if image is None:
        size = config.get("input_size") or [64, 64]
        h, w = (max(m, -(-max(int(s), 32) // m) * m) for s in size[:2])
        image = _synthetic_image(h, w, channels)
    x = model_input(image, config, name)
    h, w = (max(m, s // m * m) for s in x.shape[-2:])
    if x.shape[-2] < h or x.shape[-1] < w:
        raise UsageError(f"{name} is smaller than {m}x{m} pixels at the model's scale; use a "
                         "larger test image.")
    mean, std = normalization(config)
    raw = ((x[..., :h, :w] * std + mean) * 255.0).clamp(0, 255)
    return raw.float().numpy().astype(np.float32)


def _probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Logits / temperature, then sigmoid (one channel) or softmax over the channel axis, as
    the postprocessing does."""
    t = torch.from_numpy(logits).double() / temperature
    p = torch.sigmoid(t) if t.shape[1] == 1 else torch.softmax(t, dim=1)
    return p.float().numpy()


def _run_onnx(data: bytes, raw: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """The exported ONNX weights on the test input, preprocessed as the package says."""
    from unetkit.infer.onnx import make_session

    mean, std = (np.asarray(config["normalization"][k], np.float32).reshape(1, -1, 1, 1)
                 for k in ("mean", "std"))
    x = ((raw * np.float32(1 / 255) - mean) / std).astype(np.float32)
    session = make_session(data, cpu_only=True)
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _torchscript(net: nn.Module, raw: np.ndarray, path: Path) -> str | None:
    """Trace to TorchScript and check it at a second size; None when written, else why not."""
    from unetkit.models.geometry import geometry_of

    m = geometry_of(net).pad_multiple
    c = raw.shape[1]
    gen = torch.Generator().manual_seed(0)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation and tracer notes: checked below
            traced = torch.jit.trace(net, torch.randn(1, c, 2 * m + 1, 3 * m + 1, generator=gen),
                                     check_trace=False)
            check = torch.randn(2, c, 3 * m, m + 5, generator=gen)
            diff = float((traced(check) - net(check)).abs().max())
    except Exception as exc:  # tracing is best effort: the ONNX weights stay
        return f"TorchScript tracing failed ({type(exc).__name__}); package has no torchscript"
    if not diff <= 1e-4:
        return f"TorchScript trace is not size-independent (diff {diff:.3g}); left out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(traced, str(path))
    return None


def _state_dict(net: nn.Module, config: dict[str, Any], path: Path) -> dict[str, Any] | None:
    """Save the state dict and return build_model's kwargs, or None for models it can't
    rebuild (ensembles and the like)."""
    from unetkit.models.registry import build_model

    arch = config.get("architecture") or {}
    options = dict(arch.get("options") or {})
    if "encoder_weights" in options:
        options["encoder_weights"] = None  # weights come from the state dict
    try:
        fresh = build_model(arch["name"], **options)
        fresh.load_state_dict(net.state_dict(), strict=True)
    except Exception:
        return None
    torch.save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, path)
    return {"name": arch["name"], **options}


def _cover(raw: np.ndarray, probs: np.ndarray, class_names: list[str], path: Path) -> None:
    """A 2:1 PNG: the test image beside its predicted mask (class colours)."""
    from PIL import Image

    from unetkit.data.overlay import colorize, to_rgb

    image = np.clip(raw[0].transpose(1, 2, 0), 0, 255).astype(np.uint8)
    mask = (probs[0, 0] > 0.5).astype(np.uint8) if probs.shape[1] == 1 else probs[0].argmax(0)
    panels = [to_rgb(image), colorize(mask.astype(np.uint8), max(2, len(class_names)))]
    side = 256
    h, w = mask.shape
    size = (max(1, round(w * side / max(h, w))), max(1, round(h * side / max(h, w))))
    canvas = Image.new("RGB", (2 * side, side))  # 2:1, each panel letterboxed, aspect kept
    for i, panel in enumerate(panels):
        tile = Image.fromarray(panel).resize(size, Image.NEAREST)
        canvas.paste(tile, (i * side + (side - size[0]) // 2, (side - size[1]) // 2))
    canvas.save(path)


def _readme(artifact: Path, config: dict[str, Any], name: str, path: Path) -> None:
    """The run's model card (model/README.md) when there is one, else a short generated one."""
    card = artifact / "README.md"
    if card.is_file():
        text = card.read_text()
    else:
        arch = config.get("architecture") or {}
        norm = config.get("normalization") or {}
        text = (f"# {name}\n\nA {arch.get('name', 'U-Net')} segmentation model trained with "
                f"unetkit.\n\nClasses: {', '.join(config.get('class_names') or [])}.\n\n"
                "## Inputs\n\nPixel values 0-255 (N x C x H x W; H and W multiples of the "
                f"model's padding multiple), at the training scale {config.get('scale', 1.0)} "
                f"of the original images. Preprocessing: /255, then (x - mean) / std with "
                f"mean {norm.get('mean')} and std {norm.get('std')} per channel.\n\n"
                "## Outputs\n\nPer-class probabilities (sigmoid for a binary model, softmax "
                "over classes otherwise); the weights themselves output logits.\n")
    if "alidation" not in text:
        text += ("\n## Validation\n\nThe package's test tensors were computed with the "
                 "exported ONNX weights; `unetkit evaluate` reports Dice and IoU on held-out "
                 "data.\n")
    path.write_text(text)


def _channel_names(channels: int) -> list[str]:
    if channels == 3:
        return ["red", "green", "blue"]
    return ["gray"] if channels == 1 else [f"channel{i}" for i in range(channels)]


def _tensors(spec: Any, config: dict[str, Any], m: int, files: dict[str, Path],
             out_channels: int) -> tuple[Any, Any]:
    """The input and output tensor descriptions (axes, data, pre- and postprocessing)."""
    channels = int(config.get("in_channels", 3))
    norm = config["normalization"]
    space = [spec.SpaceInputAxis(id=spec.AxisId(a), size=spec.ParameterizedSize(min=m, step=m))
             for a in ("y", "x")]
    pre = [spec.ScaleLinearDescr(kwargs=spec.ScaleLinearKwargs(gain=1 / 255)),
           spec.FixedZeroMeanUnitVarianceDescr(kwargs=spec.FixedZeroMeanUnitVarianceAlongAxisKwargs(
               axis=spec.AxisId("channel"), mean=[float(v) for v in norm["mean"]],
               std=[float(v) for v in norm["std"]]))]
    inp = spec.InputTensorDescr(
        id=spec.TensorId(INPUT_ID), description="image pixel values 0-255 at the training scale",
        axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=_channel_names(channels)), *space],
        data=spec.IntervalOrRatioDataDescr(type="float32", range=(0.0, 255.0)),
        test_tensor=spec.FileDescr(source=files["test_input"]), preprocessing=pre)
    names = list(config.get("class_names") or [])
    binary = out_channels == 1
    if binary:
        names = names[-1:] or ["foreground"]
    if len(names) != out_channels:
        names = [f"class{i}" for i in range(out_channels)]
    post = [spec.SigmoidDescr()] if binary else [
        spec.SoftmaxDescr(kwargs=spec.SoftmaxKwargs(axis=spec.AxisId("channel")))]
    temperature = temperature_of(config)
    if temperature != 1.0:  # calibrated by fit: logits / T first
        post.insert(0, spec.ScaleLinearDescr(kwargs=spec.ScaleLinearKwargs(gain=1 / temperature)))
    out_space = [spec.SpaceOutputAxis(id=spec.AxisId(a), size=spec.SizeReference(
        tensor_id=spec.TensorId(INPUT_ID), axis_id=spec.AxisId(a))) for a in ("y", "x")]
    out = spec.OutputTensorDescr(
        id=spec.TensorId(OUTPUT_ID),
        description="foreground probability" if binary else "class probabilities",
        axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=names), *out_space],
        data=spec.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
        test_tensor=spec.FileDescr(source=files["test_output"]), postprocessing=post)
    return inp, out


def _weights(spec: Any, files: dict[str, Path], opset: int,
             build_kwargs: dict[str, Any] | None) -> Any:
    """The weights entries: pytorch_state_dict (the original) with its ONNX and TorchScript
    conversions, or ONNX alone as the original."""
    torch_version = spec.Version(torch.__version__.split("+")[0])
    parent = "pytorch_state_dict" if build_kwargs is not None else None
    entries: dict[str, Any] = {"onnx": spec.OnnxWeightsDescr(
        source=files["onnx"], opset_version=opset, parent=parent,
        comment="normalised image in, logits out; exported by unetkit")}
    if build_kwargs is not None:
        entries["pytorch_state_dict"] = spec.PytorchStateDictWeightsDescr(
            source=files["state_dict"], pytorch_version=torch_version,
            architecture=spec.ArchitectureFromLibraryDescr(
                callable="build_model", import_from="unetkit.models.registry",
                kwargs=build_kwargs),
            comment="needs unetkit installed (pip install unetkit)")
    if "torchscript" in files:
        entries["torchscript"] = spec.TorchscriptWeightsDescr(
            source=files["torchscript"], pytorch_version=torch_version,
            parent=parent or "onnx")
    return spec.WeightsDescr(**entries)


def _people(spec: Any, meta: dict[str, Any], authors: list[str] | None) -> list[Any]:
    entries = [{"name": a} for a in authors] if authors else list(meta.get("authors") or [])
    people = [e if isinstance(e, dict) else {"name": str(e)} for e in entries]
    return [spec.Author(**p) for p in people] or [spec.Author(name="unetkit user")]


def _citations(spec: Any, meta: dict[str, Any]) -> list[Any]:
    cites = list(meta.get("cite") or [])
    entries = [c if isinstance(c, dict) else {"text": str(c)} for c in cites]
    if not entries:
        entries = [{"text": UNET_CITATION[0], "doi": UNET_CITATION[1]}]
    return [spec.CiteEntry(**e) for e in entries]


def _license(spec: Any, name: str) -> Any:
    """An SPDX licence id, or one sentence naming the flag."""
    try:
        return spec.LicenseId(name)
    except ValueError as exc:
        raise UsageError(f"--license {name} is not an SPDX licence id (e.g. MIT, CC-BY-4.0, "
                         "BSD-3-Clause; see https://spdx.org/licenses/).") from exc


def _describe(spec: Any, config: dict[str, Any], meta: dict[str, Any], files: dict[str, Path],
              parts: dict[str, Any]) -> Any:
    """The whole ModelDescr (validated by the spec as it is built)."""
    inp, out = _tensors(spec, config, parts["multiple"], files, parts["out_channels"])
    arch = config.get("architecture") or {}
    return spec.ModelDescr(
        name=parts["name"],
        description=str(meta.get("description") or f"{arch.get('name', 'U-Net')} semantic "
                        "segmentation model trained with unetkit."),
        authors=_people(spec, meta, parts["authors"]),
        cite=_citations(spec, meta),
        license=_license(spec, parts["license"]),
        documentation=spec.FileDescr(source=files["readme"]),
        covers=[spec.FileDescr(source=files["cover"])],
        tags=list(meta.get("tags") or ["unet", "segmentation", "unetkit"]),
        inputs=[inp], outputs=[out],
        weights=_weights(spec, files, parts["opset"], parts["build_kwargs"]),
        config=spec.Config(unetkit={"config": {k: v for k, v in config.items()
                                                if k != "save_id"}}),
    )


def _model_name(artifact: Path, meta: dict[str, Any]) -> str:
    """The package's name: from the meta file, else from the run directory's name."""
    import re

    base = artifact.parent.name if artifact.name == "model" else artifact.name
    name = str(meta.get("name") or f"unetkit {base} segmentation")
    name = re.sub(r"[^A-Za-z0-9_+\- ()]", "-", name)[:64]
    return name if len(name) >= 5 else f"unetkit {name}"


def _check_model(net: nn.Module) -> None:
    from unetkit.models.geometry import geometry_of

    arch = getattr(net, "unetkit_arch", {}) or {}
    if arch.get("name") == "unet3d":
        raise UsageError("BioImage Model Zoo export covers the 2-D models; unet3d is not "
                         "supported yet.")
    if geometry_of(net).valid_padding:
        raise UsageError("BioImage Model Zoo export of valid-padding models (unet-valid) is not "
                         "supported yet; export it with --onnx.")


def _write_files(net: nn.Module, config: dict[str, Any], root: Path, image: np.ndarray | None,
                 image_name: str, opset: int) -> dict[str, Any]:
    """Write weights, test tensors, cover and README under `root`; the files and facts the
    description needs."""
    from unetkit.infer.onnx import export_onnx

    files = {k: root / v for k, v in (
        ("onnx", "weights.onnx"), ("state_dict", "weights.pt"), ("readme", "README.md"),
        ("cover", "cover.png"), ("test_input", "test_input.npy"),
        ("test_output", "test_output.npy"), ("torchscript", "weights_torchscript.pt"))}
    onnx = export_onnx(net, opset=opset, calibrated=False)  # the postprocessing divides by T
    files["onnx"].write_bytes(onnx.data)
    raw = _test_input(net, config, image, image_name)
    probs = _probabilities(_run_onnx(onnx.data, raw, config), temperature_of(config))
    np.save(files["test_input"], raw)
    np.save(files["test_output"], probs)
    notes, formats = [], ["onnx"]
    why = _torchscript(net, raw, files["torchscript"])
    if why:
        notes.append(why)
        del files["torchscript"]
    else:
        formats.append("torchscript")
    build_kwargs = _state_dict(net, config, files["state_dict"])
    if build_kwargs is None:
        notes.append("unetkit.models.registry.build_model cannot rebuild this model; the "
                     "package has no pytorch_state_dict weights")
    else:
        formats.insert(0, "pytorch_state_dict")
    _cover(raw, probs, list(config.get("class_names") or []), files["cover"])
    return {"files": files, "notes": notes, "formats": formats, "build_kwargs": build_kwargs,
            "out_channels": int(probs.shape[1])}


def export_bioimageio(model: str | Path, out: str | Path, *, authors: list[str] | None = None,
                      license: str | None = None, meta: dict[str, Any] | None = None,
                      image: np.ndarray | None = None, image_name: str = "the test image",
                      opset: int = 17) -> BioimageioResult:
    """Write a bioimageio.spec 0.5 model package (zip with rdf.yaml) for a run or artifact.

    `authors` and `license` win over the `meta` mapping (--bioimageio-meta); `image` (H×W×C
    uint8), when given, is the test input and cover image instead of a synthetic one.
    """
    from unetkit.infer.onnx import model_config
    from unetkit.io_utils import atomic_path
    from unetkit.models.artifact import find_artifact, load_model
    from unetkit.models.geometry import geometry_of

    spec, meta, out = _spec(), dict(meta or {}), Path(out)
    from bioimageio.spec import save_bioimageio_package

    if out.suffix.lower() != ".zip":
        raise UsageError(f"--bioimageio {out} must name a .zip file.")
    chosen = license or meta.get("license") or DEFAULT_LICENSE
    _license(spec, chosen)  # a wrong flag fails before any work
    artifact = find_artifact(model)
    net = copy.deepcopy(load_model(artifact)).float().cpu().eval()
    _check_model(net)
    config = model_config(net)
    with tempfile.TemporaryDirectory(prefix="unetkit-bmz-") as tmp:
        done = _write_files(net, config, Path(tmp), image, image_name, opset)
        name = _model_name(artifact, meta)
        _readme(artifact, config, name, done["files"]["readme"])
        parts = {**done, "multiple": geometry_of(net).pad_multiple, "name": name,
                 "authors": authors, "opset": opset,
                 "license": chosen}
        try:
            descr = _describe(spec, config, meta, done["files"], parts)
        except UsageError:
            raise
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            reason = " ".join(str(exc).split())
            reason = reason if len(reason) < 400 else reason[:400] + " ..."
            raise UnetkitError(f"The BioImage Model Zoo description is invalid: {reason}") \
                from exc
        package = save_bioimageio_package(descr, output_path=Path(tmp) / "package.zip")
        with atomic_path(out) as target:  # a failed export leaves no half-written zip
            shutil.copyfile(package, target)
    return BioimageioResult(out, done["formats"], done["notes"])


def export_command(model: Path, out: Path, authors: list[str] | None, license: str | None,
                   meta_file: Path | None, image_path: Path | None, opset: int) -> None:
    """`unetkit export MODEL --bioimageio FILE.zip`: write the package and say what is in it."""
    import sys

    from unetkit.data.readers import read_image

    _spec()
    image = read_image(image_path) if image_path is not None else None
    result = export_bioimageio(model, out, authors=authors, license=license,
                               meta=read_meta(meta_file), image=image,
                               image_name=str(image_path or "the test image"), opset=opset)
    print(f"Wrote {result.path} (BioImage Model Zoo 0.5 package; weights: "
          f"{', '.join(result.weight_formats)}).", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}.", file=sys.stderr)
