"""Datasets and loaders as `fit` trains on them, shared by fit, lr-find, the planner's probe
and the bench, so that what is timed is what is trained."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Sampler

from unetkit.data.cache import ArrayCache
from unetkit.data.dataset import SegmentationDataset
from unetkit.data.focus import RareClassCrop, rare_classes
from unetkit.data.transforms import build_transforms


class EpochSeededSampler(Sampler[int]):
    """A shuffle fixed by (seed, epoch), so a resumed run sees the same data order.

    `length` > n repeats the data within an epoch: when patches are much smaller than the
    images, an epoch then still covers about every image's area once.
    """

    def __init__(self, n: int, seed: int, length: int | None = None) -> None:
        self.n, self.seed, self.epoch = n, seed, 0
        self.length = max(n, length or n)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):  # type: ignore[override]
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        rounds = -(-self.length // self.n)
        order = torch.cat([torch.randperm(self.n, generator=g) for _ in range(rounds)])
        # each item carries its own augmentation seed: independent of worker and RNG history
        base = (self.seed * 1_000_003 + self.epoch) * 10_000_019
        return iter([(int(i), base + k) for k, i in enumerate(order[:self.length].tolist())])

    def __len__(self) -> int:
        return self.length


def training_dataset(cache: ArrayCache, indices: list[int], size: list[int], augment: str,
                     channels: int, mean: list[float], std: list[float],
                     weight_maps: bool = False, rare_crops: float = 0.0,
                     num_classes: int = 2) -> SegmentationDataset:
    """Augmented random patches of `size` from the cached training images; `rare_crops` of
    them centred on a rare class (data/focus.py)."""
    focus = None
    if rare_crops > 0:
        focus = RareClassCrop(rare_classes(cache, indices, max(num_classes, 2)), rare_crops,
                              size)
    return SegmentationDataset(cache, indices, build_transforms(size, augment, True,
                                                                channels == 1),
                               channels, mean, std, weight_maps, focus)


def make_loader(ds: SegmentationDataset, batch: int, train: bool, workers: int, seed: int,
            device: torch.device, length: int | None = None) -> DataLoader:
    """The one DataLoader recipe (fit, lr-find, the bench): a seeded, resumable order for
    training; `length` > len(ds) repeats the data within an epoch."""
    sampler = EpochSeededSampler(len(ds), seed, length) if train else None
    return DataLoader(ds, batch_size=batch, sampler=sampler, shuffle=False,
                      drop_last=train and len(sampler or ds) > batch,
                      num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0)


