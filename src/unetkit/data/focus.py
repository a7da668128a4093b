"""Class-aware crops: centre a share of the training patches on a pixel of a rare class.

Random crops of a street scene land on road and sky; a pole or a bicyclist, under 1 % of the
pixels, is in few patches and the network learns to never predict it. With probability `p`
a patch is instead centred on a random pixel of one of the rare classes present in the image
(each present rare class equally likely), and the usual augmentation follows. Patches that
cover the whole image need no focus, so the crop is skipped there.
"""

from __future__ import annotations

import numpy as np
import torch

from unetkit.data.cache import ArrayCache

RARE_SHARE = 0.10  # a class under this share of the labelled training pixels is rare


def rare_classes(cache: ArrayCache, indices: list[int], num_classes: int,
                 share: float = RARE_SHARE) -> list[int]:
    """Classes present in the training masks on fewer than `share` of the labelled pixels."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for i in indices:
        counts += np.bincount(np.asarray(cache.mask(i)).ravel(), minlength=256)[:num_classes]
    total = max(int(counts.sum()), 1)
    return [c for c in range(num_classes) if 0 < counts[c] < share * total]


class RareClassCrop:
    """With probability `p`, cut a `size` window centred on a rare-class pixel (clamped to
    the image); else leave the image whole for the random crop. Uses torch's RNG, so the
    dataset's per-item seed fixes it."""

    def __init__(self, classes: list[int], p: float, size: list[int]) -> None:
        self.classes, self.p, self.size = list(classes), float(p), list(size)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = mask.shape[:2]
        ph, pw = min(self.size[0], h), min(self.size[1], w)
        if not self.classes or (ph == h and pw == w) or float(torch.rand(())) >= self.p:
            return image, mask
        present = [c for c in self.classes if (mask == c).any()]
        if not present:
            return image, mask
        ys, xs = np.nonzero(mask == present[int(torch.randint(len(present), ()))])
        k = int(torch.randint(len(ys), ()))
        y0 = int(np.clip(ys[k] - ph // 2, 0, h - ph))
        x0 = int(np.clip(xs[k] - pw // 2, 0, w - pw))
        return image[y0:y0 + ph, x0:x0 + pw], mask[y0:y0 + ph, x0:x0 + pw]
