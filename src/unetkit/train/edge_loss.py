"""An edge-aware smoothness term for training on partial labels (scribbles).

Strokes label the middle of regions, never the pixels next to a boundary, so a model trained
on the strokes alone places boundaries anywhere between them (on membrane slices it thickens
every membrane). This term, a gated-CRF-style regulariser (Obukhov et al., 2019), asks
neighbouring pixels of similar intensity to get the same class, on every pixel, annotated or
not: boundaries then settle on the image's edges. It costs a few element-wise passes over
the batch, small beside the network.
"""

from __future__ import annotations

import torch
from torch import Tensor

RADIUS = 2  # px: the (2r+1)^2 neighbourhood compared with each pixel
SIGMA_XY = 2.0  # px: nearer neighbours count more
SIGMA_INTENSITY = 0.5  # in normalised image units (1 = one standard deviation of the data)
SPARSE_WEIGHT = 1.0  # the term's weight when a data set's masks are partial


def _class_probabilities(logits: Tensor) -> Tensor:
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], 1)
    return torch.softmax(logits, 1)


def _centre(image: Tensor, size: tuple[int, int]) -> Tensor:
    """The centre window of `image` a valid-padding model predicts."""
    dh, dw = (image.shape[-2] - size[0]) // 2, (image.shape[-1] - size[1]) // 2
    return image[..., dh:dh + size[0], dw:dw + size[1]]


def edge_aware_smoothness(logits: Tensor, image: Tensor, radius: int = RADIUS,
                          sigma_xy: float = SIGMA_XY,
                          sigma_intensity: float = SIGMA_INTENSITY) -> Tensor:
    """Mean over pixel pairs within `radius` of k(i, j) * P(class_i != class_j), with
    k = exp(-|I_i - I_j|^2 / 2 sigma_I^2 - |x_i - x_j|^2 / 2 sigma_xy^2): 0 for a
    prediction that is constant, or that changes only across strong image edges."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        probs = _class_probabilities(logits.float())
        img = _centre(image, tuple(logits.shape[-2:])).float()
        h, w = probs.shape[-2:]
        total, pairs = probs.new_zeros(()), 0
        for dy in range(0, radius + 1):
            for dx in range(-radius, radius + 1):
                if (dy, dx) <= (0, 0) or dy >= h or abs(dx) >= w:
                    continue  # each unordered pair once
                a = (slice(None), slice(None), slice(0, h - dy), slice(max(0, -dx), w - max(0, dx)))
                b = (slice(None), slice(None), slice(dy, h), slice(max(0, dx), w - max(0, -dx)))
                diff = (img[a] - img[b]).pow(2).sum(1)
                k = torch.exp(-diff / (2 * sigma_intensity ** 2)
                              - (dy * dy + dx * dx) / (2 * sigma_xy ** 2))
                disagree = 1 - (probs[a] * probs[b]).sum(1)
                total = total + (k * disagree).mean()
                pairs += 1
        return total / max(pairs, 1)


def annotated_share(cache: object, indices: list[int], ignore: int = 255) -> float:
    """The share of annotated (not `ignore`) mask pixels over the given cached samples."""
    done = total = 0
    for i in indices:
        m = cache.mask(i)
        done += int((m != ignore).sum())
        total += m.size
    return done / max(total, 1)


def edge_weight_for(share: float, requested: float | None) -> float:
    """The term's weight: as requested (`--loss-option edge_weight=W`), else SPARSE_WEIGHT
    when fewer than half of the training pixels are annotated (partial labels), else 0."""
    if requested is not None:
        return float(requested)
    return SPARSE_WEIGHT if share < 0.5 else 0.0
