"""Every model by name: `build_model(name, **options)` and the table `unetkit models` prints.

The built-in models are registered on first use (models/zoo.py; their modules import timm
and torchvision). The ensemble is registered here: its members are built by name, so it is
the one model that needs the registry, and the model modules never import it back.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from unetkit.errors import UnetkitError, UsageError
from unetkit.models.ensemble import Ensemble
from unetkit.models.geometry import Geometry


@dataclass
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=lambda: {"in_channels": 3, "classes": 1})


REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, builder: Callable[..., nn.Module], description: str,
             reference: dict[str, Any] | None = None, **defaults: Any) -> None:
    REGISTRY[name] = ModelEntry(name, builder, description, defaults,
                                reference or {"in_channels": 3, "classes": 1})


_BUILTINS_LOADED = []  # non-empty once the built-in models are registered


def _ensure_loaded() -> None:
    """Register the built-in models once, on first use; a user's own `register` calls, before
    or after, keep their entries (a built-in never replaces a name already taken)."""
    if _BUILTINS_LOADED:
        return
    from unetkit.models.zoo import register_builtin

    _BUILTINS_LOADED.append(True)

    def builtin(name: str, *args: Any, **kwargs: Any) -> None:
        if name not in REGISTRY:
            register(name, *args, **kwargs)

    register_builtin(builtin)
    builtin("ensemble", build_ensemble, "Mean-probability ensemble of K models (what `fit "
            "--folds K` saves).", reference={"in_channels": 3, "classes": 1, "members": 2})


def model_names() -> list[str]:
    _ensure_loaded()
    return list(REGISTRY)


def get_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in REGISTRY:
        raise UsageError(f"--model {name!r} is unknown; choose one of {', '.join(REGISTRY)} "
                         "(see `unetkit models`).")
    return REGISTRY[name]


def resolve_options(name: str, **options: Any) -> dict[str, Any]:
    """The full option set a model is built with: builder signature < preset < user."""
    entry = get_entry(name)
    sig = inspect.signature(entry.builder)
    resolved = {k: p.default for k, p in sig.parameters.items()
                if p.default is not inspect.Parameter.empty}
    resolved.update(entry.defaults)
    accepted = set(sig.parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise UsageError(f"Model {name!r} has no option(s) {', '.join(unknown)}; it accepts "
                         f"{', '.join(sorted(accepted))}.")
    resolved.update(options)
    return resolved


def build_model(name: str, **options: Any) -> nn.Module:
    """Build a registered model; the resolved options ride along for saving as an artifact.

    Every model declares its `geometry` (see models/geometry.py): predict, export and
    training ask it instead of guessing from the class."""
    resolved = resolve_options(name, **options)
    model = get_entry(name).builder(**resolved)
    if not isinstance(getattr(model, "geometry", None), Geometry):
        raise UnetkitError(f"Model {name!r} declares no geometry (a models.geometry.Geometry "
                           "`geometry` property); every registered model needs one.")
    model.unetkit_arch = {"name": name, "options": resolved}
    return model


def build_ensemble(member: dict[str, Any] | None = None, members: int = 2, in_channels: int = 3,
                   classes: int = 1) -> Ensemble:
    """`members` fresh models of the architecture `member` ({"name", "options"}), averaged."""
    member = member or {"name": "unet", "options": {}}
    options = {**member.get("options", {}), "in_channels": in_channels, "classes": classes}
    if "encoder_weights" in options:
        options["encoder_weights"] = None  # weights come from the saved folds
    return Ensemble([build_model(member["name"], **options) for _ in range(members)],
                    binary=classes == 1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
