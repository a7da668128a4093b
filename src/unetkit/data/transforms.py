"""Paired image/mask augmentation with torchvision.transforms.v2 and tv_tensors.Mask.

Every geometric change applies identically to image and mask; masks always resample nearest
and areas that a rotation or shift uncovers are filled with the ignore value, so the loss
never learns from invented pixels. Photometric changes touch the image only.
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from unetkit.errors import UsageError

IGNORE = 255  # internal ignore value in class-index masks
AUGMENTS = ("none", "default", "strong", "natural")


class RandomGamma(torch.nn.Module):
    """Image-only gamma change on float images in [0, 1]."""

    def __init__(self, low: float = 0.7, high: float = 1.5, p: float = 0.3) -> None:
        super().__init__()
        self.low, self.high, self.p = low, high, p

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.rand(()) < self.p:
            gamma = float(torch.empty(()).uniform_(self.low, self.high))
            image = tv_tensors.wrap(image.clamp(0, 1).pow(gamma), like=image)
        return image, mask


class RandomRot90(torch.nn.Module):
    """Rotate image and mask together by a random multiple of 90 degrees (square patches):
    exact, no interpolation, and free of the filled corners of arbitrary rotations."""

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if image.shape[-1] != image.shape[-2]:
            return image, mask
        k = int(torch.randint(0, 4, ()))
        if k == 0:
            return image, mask
        return (tv_tensors.wrap(image.rot90(k, (-2, -1)), like=image),
                tv_tensors.wrap(mask.rot90(k, (-2, -1)), like=mask))


def _crop(size: list[int], train: bool) -> list[torch.nn.Module]:
    fill = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE}
    if train:
        return [v2.RandomCrop(size, pad_if_needed=True, fill=fill, padding_mode="constant")]
    return []


def _natural(fill: dict, grey: bool) -> list[torch.nn.Module]:
    """Upright scenes (streets, rooms, pets): mirror left-right only (the sky stays on top),
    zoom in and out so objects appear at several sizes, tilt a little, jitter the colour."""
    return [v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.RandomAffine(degrees=5, scale=(0.75, 1.5), fill=fill)], p=0.7),
            v2.ColorJitter(brightness=0.25, contrast=0.25, saturation=0 if grey else 0.25,
                           hue=0 if grey else 0.02)]


def build_transforms(size: list[int], augment: str = "default", train: bool = True,
                     grey: bool = False, center_crop: bool = False) -> v2.Compose:
    """Crop/pad to the patch size, then augment (training) and convert to float in [0, 1]."""
    if augment not in AUGMENTS:
        raise UsageError(f"--augment {augment!r} is unknown; choose one of {', '.join(AUGMENTS)}.")
    fill = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE}
    ops: list[torch.nn.Module] = list(_crop(size, train))
    if center_crop and not train:  # fixed-size models validate on the centre patch
        ops.append(v2.CenterCrop(size))
    if train and augment == "natural":
        ops += _natural(fill, grey)
    elif train and augment != "none":
        strong = augment == "strong"
        ops += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), RandomRot90()]
        ops.append(v2.RandomApply([v2.RandomAffine(
            degrees=30 if strong else 15, translate=(0.1, 0.1) if strong else (0.05, 0.05),
            scale=(0.75, 1.3) if strong else (0.9, 1.1), fill=fill)], p=0.5 if strong else 0.3))
        if strong:
            ops.append(v2.RandomApply([v2.ElasticTransform(alpha=30.0, sigma=5.0, fill=fill)],
                                      p=0.3))
        jitter = 0.3 if strong else 0.15
        ops.append(v2.ColorJitter(brightness=jitter, contrast=jitter,
                                  saturation=0 if grey else jitter))
    ops.append(v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64},
                          scale=True))
    if train and augment == "strong":
        ops += [RandomGamma(), v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=0.2),
                v2.RandomApply([v2.GaussianNoise(sigma=0.03)], p=0.3)]
    return v2.Compose(ops)
