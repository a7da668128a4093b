"""K models as one: the cross-validation folds of a run, averaged in probability space.

The ensemble returns the logit of the mean probability (sigmoid for one channel, softmax
otherwise), so every consumer of logits — predict, TTA, tiling, ONNX — needs no change.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from unetkit.errors import UsageError
from unetkit.models.geometry import Geometry, combined, geometry_of

EPS = 1e-6


class Ensemble(nn.Module):
    """The given models side by side (`build_model("ensemble", ...)` builds them by name)."""

    def __init__(self, members: list[nn.Module], binary: bool) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.binary = binary

    @property
    def geometry(self) -> Geometry:
        """The members' own: they all see the same input."""
        return combined(geometry_of(m) for m in self.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = [m(x).float() for m in self.members]
        if self.binary:
            p = torch.stack([torch.sigmoid(v) for v in logits]).mean(0).clamp(EPS, 1 - EPS)
            return torch.log(p) - torch.log1p(-p)
        p = torch.stack([torch.softmax(v, 1) for v in logits]).mean(0)
        return torch.log(p.clamp_min(EPS))


def ensemble_of(models: list[nn.Module]) -> Ensemble:
    """Wrap trained models of one architecture (copies: the models are untouched), described
    as `build_model("ensemble", ...)` describes it, so save_model/load_model round-trip it."""
    arch = models[0].unetkit_arch
    if any(m.unetkit_arch != arch for m in models):
        raise UsageError("An ensemble's models must share one architecture and its options.")
    opts = arch["options"]
    classes = opts.get("classes", 1)
    ens = Ensemble([copy.deepcopy(m) for m in models], binary=classes == 1)
    ens.unetkit_arch = {"name": "ensemble", "options": {
        "member": arch, "members": len(models), "in_channels": opts.get("in_channels", 3),
        "classes": classes}}
    return ens
