"""Per-pixel uncertainty from class probabilities: the maths every consumer shares.

Predictive entropy says how unsure the averaged prediction is; with two or more members
(folds, TTA views, dropout samples) the mutual information is the part of it due to the
members disagreeing (entropy of the mean minus the mean of the members' entropies).
Binary models give one foreground channel; it is treated as the two classes {1-p, p}.
Entropies are in nats; divide by log(K) for a 0..1 scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

EPS = 1e-7


def _as_classes(probs: torch.Tensor, binary: bool) -> torch.Tensor:
    """K×H×W (or N×K×H×W) class probabilities; a binary model's one channel becomes two."""
    if binary:
        p = probs.clamp(0, 1)
        return torch.cat([1 - p, p], dim=-3)
    return probs


def predictive_entropy(probs: torch.Tensor, binary: bool) -> torch.Tensor:
    """-sum_k p_k log p_k over the class axis (-3): K×H×W -> H×W (N×K×H×W -> N×H×W)."""
    p = _as_classes(probs.float(), binary)
    return -(p * p.clamp_min(EPS).log()).sum(-3)


def max_entropy(num_classes: int) -> float:
    """log K: the entropy of a uniform prediction (K = 2 for binary models)."""
    return float(torch.log(torch.tensor(float(max(num_classes, 2)))))


def mutual_information(member_probs: torch.Tensor, binary: bool) -> torch.Tensor:
    """M×K×H×W probabilities of M members -> H×W mutual information (>= 0).

    Equals the entropy of the members' mean minus the mean of their entropies.
    """
    mean = member_probs.float().mean(0)
    expected = predictive_entropy(member_probs, binary).mean(0)
    return (predictive_entropy(mean, binary) - expected).clamp_min(0)


UNCERTAIN = 0.5  # normalised entropy above which a pixel counts as uncertain (the CSV's share)
ROWS_PER_CHUNK = 1024  # maps are computed by row bands: no K×H×W float32 temporaries


@dataclass
class UncertaintyMaps:
    """Per-pixel maps of one image, both divided by log K (0..1), and their summaries.

    `source` names the members: ensemble (the folds), ensemble+tta, tta (flip/rot90 views),
    mc-dropout (dropout samples) or single (one prediction: entropy only, no MI).
    """

    entropy: np.ndarray  # H×W predictive entropy of the members' mean
    mutual_info: np.ndarray | None  # H×W; None with one member
    members: int
    source: str
    mean_entropy: float
    mean_mutual_info: float | None
    uncertain_fraction: float  # share of pixels with normalised entropy > UNCERTAIN

    @property
    def score(self) -> float:
        """Mean entropy plus mean MI (when there are members to disagree): rank's measure."""
        return self.mean_entropy + (self.mean_mutual_info or 0.0)


def uncertainty_maps(mean_probs: torch.Tensor, expected_entropy: torch.Tensor, binary: bool,
                     members: int, source: str) -> UncertaintyMaps:
    """Maps from the two things a tiled pass can accumulate without keeping member maps.

    `mean_probs` is the members' K×H×W mean probability, `expected_entropy` the H×W mean of
    their entropies already divided by log K; MI = H(mean) - mean(H(member)). The maps keep
    the input's dtype (float16 for huge images); they are computed a band of rows at a time.
    """
    h, w = mean_probs.shape[-2:]
    scale = max_entropy(2 if binary else mean_probs.shape[0])
    entropy = torch.empty((h, w), dtype=mean_probs.dtype)
    mi = torch.empty((h, w), dtype=mean_probs.dtype) if members > 1 else None
    sums = [0.0, 0.0, 0.0]  # entropy, MI, uncertain pixels
    for r in range(0, h, ROWS_PER_CHUNK):
        band = predictive_entropy(mean_probs[:, r:r + ROWS_PER_CHUNK], binary) / scale
        band = band.clamp_(0, 1)
        entropy[r:r + ROWS_PER_CHUNK] = band
        sums[0] += float(band.sum(dtype=torch.float64))
        sums[2] += float((band > UNCERTAIN).sum())
        if mi is not None:
            part = (band - expected_entropy[r:r + ROWS_PER_CHUNK].float()).clamp_(0, 1)
            mi[r:r + ROWS_PER_CHUNK] = part
            sums[1] += float(part.sum(dtype=torch.float64))
    n = max(h * w, 1)
    return UncertaintyMaps(entropy.numpy(), None if mi is None else mi.numpy(), members, source,
                           sums[0] / n, None if mi is None else sums[1] / n, sums[2] / n)
