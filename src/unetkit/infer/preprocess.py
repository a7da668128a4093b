"""An image as a model sees it: channels matched, normalised, at the working scale.

One place for what both engines need before the logits: `Predictor` runs it on every image
and the ONNX export checks its graph on an image prepared the same way. The statistics and
scale come from the artifact's config (`unetkit_meta`).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from unetkit.data.readers import match_channels
from unetkit.data.scale import scaled_size
from unetkit.errors import UnetkitError

DEFAULT_MEAN, DEFAULT_STD = 0.5, 0.25  # what save_model records when nothing else is known


def input_channels(meta: dict[str, Any]) -> int:
    return int(meta.get("in_channels", 3))


def normalization(meta: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) as C×1×1 tensors, from the config's `normalization`."""
    channels = input_channels(meta)
    norm = meta.get("normalization") or {}
    mean = torch.tensor(norm.get("mean", [DEFAULT_MEAN] * channels)).view(-1, 1, 1)
    std = torch.tensor(norm.get("std", [DEFAULT_STD] * channels)).view(-1, 1, 1)
    return mean, std


def prepare_image(image: np.ndarray, channels: int, name: str) -> torch.Tensor:
    """H×W(×C) uint8 -> C×H×W uint8 with the model's channel count.

    Stays uint8 until a tile is cut: a large image costs 1 byte per pixel and channel, and a
    read-only array is never written through, so no copy is made of it.
    """
    if image.ndim == 2:
        image = image[..., None]
    c = image.shape[-1]
    if c != channels and not (c == 1 or (c in (3, 4) and channels in (1, 3))):
        raise UnetkitError(f"{name} has {c} channels but the model expects {channels} "
                           f"(it was trained on {channels}-channel images).")
    image = match_channels(image, channels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns about read-only arrays
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


def normalize(batch: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> (x / 255 - mean) / std; an already float batch is returned as is."""
    if batch.dtype != torch.uint8:
        return batch
    return batch.float().div_(255.0).sub_(mean).div_(std)


def working_size(meta: dict[str, Any], h: int, w: int) -> tuple[int, int]:
    """The size an h×w image is run at: the training scale (data/scale.py's rule)."""
    return scaled_size((h, w), meta.get("scale", 1.0))


def resize(batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A normalised N×C×H×W batch at `size`, as the training cache resizes (antialiased)."""
    return F.interpolate(batch, size=size, mode="bilinear", antialias=True,
                         align_corners=False)


def model_input(image: np.ndarray, meta: dict[str, Any], name: str = "image") -> torch.Tensor:
    """The whole image as a normalised 1×C×h×w float batch at the working size."""
    mean, std = normalization(meta)
    x = normalize(prepare_image(image, input_channels(meta), name)[None], mean, std)
    size = working_size(meta, *image.shape[:2])
    return resize(x, size) if size != tuple(x.shape[-2:]) else x
