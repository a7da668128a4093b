"""Per-pixel uncertainty from class probabilities: the maths every consumer shares.

Predictive entropy says how unsure the averaged prediction is; with two or more members
(folds, TTA views, dropout samples) the mutual information is the part of it due to the
members disagreeing (entropy of the mean minus the mean of the members' entropies).
Binary models give one foreground channel; it is treated as the two classes {1-p, p}.
Entropies are in nats; divide by log(K) for a 0..1 scale.
"""

from __future__ import annotations

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
