"""What the pretrained-encoder U-Nets share: the weights option, reading weight files, freezing.

ImageNet weights come from the standard caches, downloaded into them when the network is
there (models/weights_cache.py); offline, a missing file is reported with the exact place to
put it.
"""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from unetkit.errors import UnetkitError

IMAGENET_NORMALIZATION = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}

# What a broken or foreign weights file can raise while being read or loaded.
LOAD_ERRORS = (RuntimeError, OSError, ValueError, KeyError, EOFError, AssertionError,
               pickle.UnpicklingError, SafetensorError)


def short_reason(exc: BaseException, limit: int = 160) -> str:
    """The first sentence of an exception, clipped: error messages must stay one sentence."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # torch.load(weights_only=True) refusing the file
        text = ("damaged, or more than a plain state dict: "
                + text.split("WeightsUnpickler error:", 1)[1].strip())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    if len(lines) > 1 and text.endswith(":"):  # torch: "Error(s) in loading ...:\n\tMissing ..."
        text = lines[1]
    text = re.split(r"(?<=[.!?])\s+(?=[A-Z(])", text)[0].rstrip(".")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def weights_choice(value: str | None) -> str | None:
    """Normalise the `encoder_weights` option to "imagenet", None, or an existing file path."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    if value.strip().lower() == "imagenet":
        return "imagenet"
    path = Path(value).expanduser()
    if not path.is_file():
        raise UnetkitError(f"--encoder-weights {value!r} is neither 'imagenet', 'none' nor an "
                           "existing weights file.")
    return str(path)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a torch checkpoint, never unpickling arbitrary code."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS as exc:
        raise UnetkitError(f"{path} is not a readable weights file ({short_reason(exc)}).") \
            from exc
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise UnetkitError(f"{path} is not a readable weights file (it holds no state dict).")
    return {k.removeprefix("module."): v for k, v in state.items()}


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Reuse RGB first-layer weights for another channel count (timm's recipe)."""
    if in_channels == weight.shape[1]:
        return weight
    if in_channels == 1:
        return weight.sum(1, keepdim=True)
    repeat = math.ceil(in_channels / weight.shape[1])
    return weight.repeat(1, repeat, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)


def channel_stats(mean: list[float], std: list[float], in_channels: int) -> dict[str, list[float]]:
    """Normalisation for `in_channels` inputs from RGB statistics (grey = the RGB average)."""
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    if in_channels == len(mean):
        return {"mean": mean, "std": std}
    if in_channels == 1:
        return {"mean": [sum(mean) / len(mean)], "std": [sum(std) / len(std)]}
    return {"mean": [mean[i % len(mean)] for i in range(in_channels)],
            "std": [std[i % len(std)] for i in range(in_channels)]}


class PretrainedEncoderUNet(nn.Module):
    """Base for U-Nets with a pretrained `self.encoder` that can be frozen.

    A frozen encoder gets no gradients and its BatchNorm layers stay in eval mode even while
    the model trains, so small batches cannot disturb the pretrained running statistics.
    """

    encoder: nn.Module
    input_normalization: dict[str, list[float]]
    encoder_frozen: bool = False

    def set_encoder_trainable(self, flag: bool) -> None:
        """Freeze (False) or unfreeze (True) the encoder, e.g. for a warm-up then fine-tune."""
        self.encoder_frozen = not flag
        for p in self.encoder.parameters():
            p.requires_grad_(flag)
        self.encoder.train(self.training and flag)

    def train(self, mode: bool = True) -> PretrainedEncoderUNet:
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self
