"""Class-aware crops: a patch centred on a rare-class pixel, seeded by torch's RNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit.data.focus import RareClassCrop, rare_classes


def _scene(h: int = 100, w: int = 120) -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros((h, w), np.uint8)
    mask[h // 2:] = 1  # road below, sky above
    mask[10, 110] = 2  # one rare pixel near the top-right corner
    image = np.stack([mask * 100] * 3, axis=-1).astype(np.uint8)
    return image, mask


def test_crop_contains_the_rare_pixel_clamped_to_the_image() -> None:
    image, mask = _scene()
    crop = RareClassCrop([2], 1.0, [32, 32])
    for seed in range(5):
        torch.manual_seed(seed)
        img, m = crop(image, mask)
        assert m.shape == (32, 32) and img.shape == (32, 32, 3)
        ys, xs = np.nonzero(m == 2)
        # centred where possible: row 10 - 16 < 0 clamps to the top, column 110 to the right
        assert (ys.tolist(), xs.tolist()) == ([10], [110 - (120 - 32)])
        assert np.array_equal(img[..., 0], m * 100)


def test_no_crop_without_luck_rare_pixels_or_room() -> None:
    image, mask = _scene()
    assert RareClassCrop([2], 0.0, [32, 32])(image, mask)[1] is mask
    assert RareClassCrop([3], 1.0, [32, 32])(image, mask)[1] is mask  # class 3 absent
    assert RareClassCrop([2], 1.0, [100, 120])(image, mask)[1] is mask  # patch = image


def test_share_of_focused_crops_follows_p() -> None:
    image, mask = _scene()
    crop = RareClassCrop([2], 0.3, [32, 32])
    torch.manual_seed(0)
    hits = sum(crop(image, mask)[1].shape == (32, 32) for _ in range(400))
    assert hits / 400 == pytest.approx(0.3, abs=0.07)


class _Cache:
    def __init__(self, masks: list[np.ndarray]) -> None:
        self.masks = masks

    def mask(self, i: int) -> np.ndarray:
        return self.masks[i]


def test_rare_classes_by_pixel_share_of_the_training_masks() -> None:
    a = np.zeros((10, 10), np.uint8)
    a[:5] = 1
    a[0, :3] = 2  # 3 % of the pixels
    b = np.full((10, 10), 255, np.uint8)  # ignored pixels count for nothing
    b[0, 0] = 3
    assert rare_classes(_Cache([a, b]), [0, 1], 5) == [2, 3]  # class 4 absent: not rare
    assert rare_classes(_Cache([a, b]), [0], 5) == [2]
