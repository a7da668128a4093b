"""Paired transforms: geometry applied identically to image and mask; ignore-filled padding."""

from __future__ import annotations

import torch
from torchvision import tv_tensors

from unetkit.data.transforms import IGNORE, RandomRot90, build_transforms


def _pair(h: int, w: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    mask = (torch.arange(h * w).view(h, w) % 5).to(torch.uint8)
    return tv_tensors.Image((mask * 50)[None].repeat(3, 1, 1)), tv_tensors.Mask(mask)


def test_rot90_moves_image_and_mask_together() -> None:
    image, mask = _pair(8, 8)
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        a, b = RandomRot90()(image, mask)
        assert torch.equal(a[0], b * 50)
        seen.add(tuple(b[0, :2].tolist()))
    assert len(seen) > 1  # it does rotate


def test_crop_pads_masks_with_the_ignore_value() -> None:
    image, mask = _pair(10, 12)
    out_image, out_mask = build_transforms([16, 16], "none", train=True)(image, mask)
    assert out_image.shape == (3, 16, 16) and out_mask.shape == (16, 16)
    assert (out_mask == IGNORE).sum() == 16 * 16 - 10 * 12
    assert out_image.dtype == torch.float32 and out_image.max() <= 1.0


def test_default_augmentation_keeps_labels_consistent() -> None:
    image, mask = _pair(24, 24)
    for seed in range(10):
        torch.manual_seed(seed)
        a, b = build_transforms([24, 24], "default", train=True)(image, mask)
        valid = b != IGNORE
        assert set(b[valid].unique().tolist()) <= {0, 1, 2, 3, 4}  # nearest: no new labels
