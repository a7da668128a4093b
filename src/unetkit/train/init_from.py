"""`fit --init-from RUN`: start training from another run's weights (fine-tuning).

Unlike --resume, which continues one run (optimizer, epoch and schedule restored), this
starts a new run whose model begins with the source's weights: same architecture and
classes required, and the source's normalisation, scale and patch size reused unless the
config sets them, so the model sees its inputs as it was trained to.
"""

from __future__ import annotations

from typing import Any

import torch

from unetkit.config import FitConfig
from unetkit.data.scale import parse_stretch
from unetkit.errors import UnetkitError, UsageError


def init_source(path: str) -> dict[str, Any]:
    """The artifact config of --init-from PATH (a run or artifact directory)."""
    from unetkit.models.artifact import find_artifact, read_config

    try:
        return read_config(find_artifact(path))[0]
    except UsageError:
        raise
    except UnetkitError as exc:
        raise UsageError(f"--init-from {path}: {str(exc).rstrip('.')}.") from exc


def with_source_settings(config: FitConfig, source: dict[str, Any]) -> FitConfig:
    """The config with --init-from's architecture options, scale, patch size and channels
    where the config leaves them open; a different model or encoder is one sentence."""
    arch = source["architecture"]
    options = {k: v for k, v in arch.get("options", {}).items()
               if k not in ("in_channels", "classes", "encoder_weights")}
    if "encoder_weights" in arch.get("options", {}):
        options["encoder_weights"] = None  # the source's weights replace any pretrained ones
    if config.model != arch["name"]:
        raise UsageError(f"--init-from {config.init_from} holds a {arch['name']} model but "
                         f"--model is {config.model}; fine-tuning needs the same architecture "
                         f"(leave --model out to use the run's).")
    asked = config.model_options.get("encoder")
    if asked is not None and asked != options.get("encoder"):
        raise UsageError(f"--init-from {config.init_from} has the {options.get('encoder')} "
                         f"encoder but --encoder is {asked}; fine-tuning needs the same "
                         f"architecture (leave --encoder out).")
    scale = source.get("scale", 1.0)
    stretched = parse_stretch(scale)
    changes: dict[str, Any] = {"model_options": {**options, **config.model_options}}
    if config.scale == "auto":
        changes["scale"] = "stretch" if stretched else scale
    if config.size is None and (stretched or source.get("input_size")):
        changes["size"] = list(stretched or source["input_size"])
    if config.in_channels is None:
        changes["in_channels"] = source.get("in_channels")
    return FitConfig(**{**config.to_dict(), **changes})


def load_source_weights(model: torch.nn.Module, config: FitConfig, source: dict[str, Any],
                        logit_channels: int) -> None:
    """Copy --init-from's weights into the freshly built model (same classes required)."""
    from unetkit.models.artifact import load_model

    names = source.get("class_names") or []
    theirs = 1 if source.get("binary", True) else len(names)
    if theirs != logit_channels:
        ours = "1 (binary)" if logit_channels == 1 else str(logit_channels)
        raise UsageError(f"--init-from {config.init_from} predicts "
                         f"{'1 (binary)' if theirs == 1 else theirs} output channel(s) "
                         f"({', '.join(names)}) but the data at {config.data} needs {ours}; "
                         f"fine-tuning needs the same classes.")
    state = load_model(config.init_from).state_dict()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).split("\n")[1].strip() if "\n" in str(exc) else str(exc)
        raise UsageError(f"The weights of --init-from {config.init_from} do not fit the model "
                         f"this fit builds ({first}); use the run's --model and --option "
                         f"values.") from exc
