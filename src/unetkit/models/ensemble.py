"""K models as one: the cross-validation folds of a run, averaged in probability space.

The ensemble returns the logit of the mean probability (sigmoid for one channel, softmax
otherwise), so every consumer of logits — predict, TTA, tiling, ONNX — needs no change.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from unetkit.models.geometry import Geometry, combined, geometry_of

EPS = 1e-6


class Ensemble(nn.Module):
    def __init__(self, member: dict[str, Any] | None = None, members: int = 2,
                 in_channels: int = 3, classes: int = 1) -> None:
        super().__init__()
        from unetkit.models.registry import build_model

        member = member or {"name": "unet", "options": {}}
        options = {**member.get("options", {}), "in_channels": in_channels, "classes": classes}
        if "encoder_weights" in options:
            options["encoder_weights"] = None  # weights come from the saved folds
        self.members = nn.ModuleList(build_model(member["name"], **options)
                                     for _ in range(members))
        self.binary = classes == 1

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
    """Wrap trained models of one architecture (their weights are copied in)."""
    from unetkit.models.registry import build_model

    arch = models[0].unetkit_arch
    opts = arch["options"]
    ens = build_model("ensemble", member=arch, members=len(models),
                      in_channels=opts.get("in_channels", 3), classes=opts.get("classes", 1))
    for target, source in zip(ens.members, models, strict=True):
        target.load_state_dict(source.state_dict())
    return ens
