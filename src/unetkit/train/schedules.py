"""Learning-rate schedules as a function of training progress in [0, 1].

Progress is the larger of steps done / planned steps and wall time used / time budget, so a
`--max-time` run anneals fully by the deadline instead of being cut off at peak rate.
"""

from __future__ import annotations

import math

from unetkit.errors import UsageError

SCHEDULERS = ("onecycle", "cosine", "poly", "none")


def lr_factor(name: str, progress: float, warmup: float = 0.1) -> float:
    """Multiplier of the base learning rate at `progress` (0 = start, 1 = end)."""
    p = min(max(progress, 0.0), 1.0)
    if name == "none":
        return 1.0
    if name == "onecycle":  # Smith's one-cycle: warm up from lr/25, cosine down to lr/1e4
        if p < warmup:
            start = 1 / 25
            return start + (1 - start) * (1 - math.cos(math.pi * p / warmup)) / 2
        q = (p - warmup) / (1 - warmup)
        return 1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi * q)) / 2
    if name == "cosine":  # linear warm-up, then cosine to zero
        if p < warmup:
            return max(p / warmup, 1e-3)
        return (1 + math.cos(math.pi * (p - warmup) / (1 - warmup))) / 2
    if name == "poly":  # nnU-Net's polynomial decay
        return (1 - p) ** 0.9
    raise UsageError(f"--scheduler {name!r} is unknown; choose one of {', '.join(SCHEDULERS)}.")
