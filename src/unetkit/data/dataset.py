"""Torch datasets over the decoded-array cache: crop/augment, then normalise."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from unetkit.data.cache import ArrayCache
from unetkit.data.readers import match_channels


def channel_stats(cache: ArrayCache, indices: list[int], channels: int,
                  max_images: int = 64) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of the training images in [0, 1], from a seeded subsample."""
    rng = np.random.default_rng(0)
    chosen = indices if len(indices) <= max_images else \
        sorted(rng.choice(indices, max_images, replace=False).tolist())
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    count = 0
    for i in chosen:
        img = match_channels(np.asarray(cache.image(i)), channels).astype(np.float64) / 255.0
        total += img.sum(axis=(0, 1))
        total_sq += (img**2).sum(axis=(0, 1))
        count += img.shape[0] * img.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-8))
    return [round(float(m), 6) for m in mean], [round(max(float(s), 1e-3), 6) for s in std]


class SegmentationDataset(Dataset):
    """Samples `indices` of a cache; `transform` is a paired v2 transform (see transforms.py)."""

    def __init__(self, cache: ArrayCache, indices: list[int], transform: torch.nn.Module,
                 channels: int, mean: list[float], std: list[float],
                 weight_maps: bool = False, focus: Any = None) -> None:
        self.cache = cache
        self.focus = focus  # e.g. data.focus.RareClassCrop, applied before `transform`
        self.weight_maps = weight_maps
        self.indices = list(indices)
        self.transform = transform
        self.channels = channels
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, ...]:
        """`item` may be (index, seed): the augmentation then depends on nothing else."""
        if isinstance(item, tuple):
            item, seed = item
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return self._load(item)
        return self._load(item)

    def _load(self, item: int) -> tuple[torch.Tensor, ...]:
        i = self.indices[item]
        image = match_channels(np.asarray(self.cache.image(i)), self.channels)
        mask_array = np.asarray(self.cache.mask(i))
        if self.focus is not None:
            image, mask_array = self.focus(image, mask_array)
        image = tv_tensors.Image(torch.from_numpy(image.copy()).permute(2, 0, 1))
        mask = tv_tensors.Mask(torch.from_numpy(np.array(mask_array)))
        image, mask = self.transform(image, mask)
        image = (image.as_subclass(torch.Tensor) - self.mean) / self.std
        mask = mask.as_subclass(torch.Tensor).long()
        if not self.weight_maps:
            return image.contiguous(), mask
        return image.contiguous(), mask, border_weights(mask)


def border_weights(mask: torch.Tensor) -> torch.Tensor:
    """The U-Net paper's weight map for an (augmented) mask; objects = connected components.

    Computed after augmentation so the weights follow every geometric change exactly; the
    class balance counts annotated pixels only (the loss drops the ignored ones).
    """
    from unetkit.data.weightmaps import binary_to_instances, unet_weight_map

    m = mask.numpy()
    fg = ((m > 0) & (m != 255)).astype(np.uint8)
    weights = unet_weight_map(binary_to_instances(fg), valid=m != 255)
    return torch.from_numpy(weights.astype(np.float32))
