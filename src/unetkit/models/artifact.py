"""The model artifact: config.json + model.safetensors, rebuilt with no pickle involved.

config.json carries what inference needs besides weights: architecture and options, class
names, whether the task is binary (one logit channel), the input normalisation, the
training input size and scale (what predict resizes images by), and the `temperature` that
`fit` calibrated the probabilities with (logits / T; absent in older artifacts: 1).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from unetkit.errors import UnetkitError, UsageError
from unetkit.io_utils import atomic_path, atomic_write_text
from unetkit.models.registry import build_model
from unetkit.models.remote import resolve_model_path

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
EMBEDDED_KEY = "unetkit_config"  # the config.json text, inside the weights file
SAVE_ID = "save_id"  # the same random id in both files of one save


def default_meta(model: nn.Module) -> dict[str, Any]:
    opts = model.unetkit_arch["options"]
    classes = int(opts.get("classes", 1))
    n = 2 if classes == 1 else classes
    return {
        "class_names": ["background", "foreground"] if n == 2 else [f"class_{i}" for i in range(n)],
        "binary": classes == 1,
        "ignore_index": None,
        "in_channels": int(opts.get("in_channels", 3)),
        # a pretrained encoder fixes its own input statistics
        "normalization": getattr(model, "input_normalization", None)
        or {"mean": [0.5] * int(opts.get("in_channels", 3)),
            "std": [0.25] * int(opts.get("in_channels", 3))},
        "input_size": None,
    }


def temperature_of(meta: dict[str, Any] | None) -> float:
    """The temperature that turns the model's logits into calibrated ones (logits / T):
    1.0 when the artifact has none (older, or `fit --no-calibrate`)."""
    value = (meta or {}).get("temperature")
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
            or value == float("inf"):
        raise UnetkitError(f"The model config's temperature {value!r} must be a positive "
                           "number.")
    return float(value)


def artifact_config(model: nn.Module, meta: dict[str, Any] | None = None,
                    what: str = "saved as artifacts") -> dict[str, Any]:
    """config.json's content for a model built by unetkit: format, architecture and meta
    (the defaults, the model's own, then `meta`). The one recipe for save and export."""
    if not hasattr(model, "unetkit_arch"):
        raise UsageError(f"Only models built with unetkit.build_model can be {what}.")
    meta = {**default_meta(model), **(getattr(model, "unetkit_meta", None) or {}), **(meta or {})}
    return {"format_version": FORMAT_VERSION, "architecture": model.unetkit_arch, **meta}


def save_model(model: nn.Module, directory: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write the artifact; each file lands atomically so a crash leaves the old one intact."""
    config = {**artifact_config(model, meta), SAVE_ID: uuid.uuid4().hex}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    text = json.dumps(config, indent=1)
    # the weights carry their own config and both files the same save id: a kill between the
    # two renames cannot pair new weights with an old config.json (see read_config)
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", EMBEDDED_KEY: text})
    atomic_write_text(directory / CONFIG_NAME, text)
    return directory


def read_config(directory: Path) -> tuple[dict[str, Any], Path]:
    """The artifact's config and the file it came from.

    config.json, when it belongs to the weights beside it (same save id, or an artifact from
    before save ids); else the copy inside the weights, which a kill between the two writes
    left ahead of config.json.
    """
    weights, path = directory / WEIGHTS_NAME, directory / CONFIG_NAME
    if not weights.is_file():
        raise UnetkitError(f"{weights} is missing; the model artifact is incomplete.")
    try:
        with safe_open(str(weights), "pt") as f:
            embedded = (f.metadata() or {}).get(EMBEDDED_KEY)
    except (SafetensorError, OSError, ValueError) as exc:
        raise UnetkitError(f"{weights} is damaged ({exc}).") from exc
    try:
        config = json.loads(path.read_text())
        own = json.loads(embedded) if embedded else None
        if own is not None and (not isinstance(config, dict)
                                or config.get(SAVE_ID) != own.get(SAVE_ID)):
            config, path = own, weights
    except (json.JSONDecodeError, OSError) as exc:
        if not embedded:
            raise UnetkitError(f"{path} holds a damaged model config ({exc}).") from exc
        config, path = json.loads(embedded), weights
    version = config.get("format_version", 1) if isinstance(config, dict) else None
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UnetkitError(f"{path} is artifact format {version}, newer than this unetkit "
                           f"reads ({FORMAT_VERSION}); upgrade unetkit to load it.")
    return config, path


def find_artifact(path: str | Path) -> Path:
    """A run directory, an artifact directory or an hf://OWNER/NAME[@REV] hub reference
    (downloaded into the Hugging Face cache) -> the artifact directory."""
    path = resolve_model_path(path)
    if not path.exists():
        raise UnetkitError(f"Model path {path} does not exist.")
    for candidate in (path, path / "model"):
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    raise UnetkitError(f"{path} is not a model: no {CONFIG_NAME} in it or in {path / 'model'}.")


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from a run directory, artifact directory or hf:// reference, in eval
    mode."""
    directory = find_artifact(path)
    weights = directory / WEIGHTS_NAME
    config, source = read_config(directory)
    try:
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UnetkitError(f"{weights} is damaged ({exc}).") from exc
    try:
        arch = config["architecture"]
        name, options = arch["name"], arch["options"]
    except (KeyError, TypeError) as exc:
        raise UnetkitError(f"{source} holds a damaged model config (no {exc}).") from exc
    options = {k: v for k, v in options.items() if k not in ("encoder_weights",)}
    model = build_model(name, **options, **({"encoder_weights": None}
                                            if "encoder_weights" in arch["options"] else {}))
    model.unetkit_arch = arch
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).split("\n")[1].strip() if "\n" in str(exc) else str(exc)
        raise UnetkitError(f"{weights} does not match the architecture in "
                           f"{source} ({first}).") from exc
    model.unetkit_meta = {k: v for k, v in config.items()
                          if k not in ("architecture", "format_version", SAVE_ID)}
    return model.eval()
