"""Every model declares its geometry; consumers read it through `geometry_of`."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unetkit.errors import UsageError
from unetkit.models.ensemble import ensemble_of
from unetkit.models.geometry import (
    UNDECLARED,
    Geometry,
    combined,
    geometry_of,
    same_padding,
    valid_padding,
)
from unetkit.models.registry import build_model, model_names
from unetkit.models.unet_valid import nearest_valid_sizes, valid_output_size


def test_every_registered_model_declares_a_geometry() -> None:
    small = {"filters": 4, "depth": 2}
    special = {"mobilenet_v2-unet": {"encoder_weights": None},
               "timm-unet": {"encoder": "mobilenetv2_100", "encoder_weights": None},
               "ensemble": {"member": {"name": "unet", "options": small}}}
    for name in model_names():
        model = build_model(name, **special.get(name, small))
        assert isinstance(geometry_of(model), Geometry), name


@pytest.mark.parametrize(("name", "options", "expected"), [
    ("unet", {"filters": 4, "depth": 3}, same_padding(8)),
    ("unet", {"filters": 4, "depth": 3, "stem": 2}, same_padding(16)),
    ("unet1024", {"filters": 4}, same_padding(128)),
    ("unet-valid", {"filters": 4, "depth": 2}, Geometry(1, 4, True, 2)),
    ("mobilenet_v2-unet", {"encoder_weights": None}, same_padding(32)),
    ("timm-unet", {"encoder": "mobilenetv2_100", "encoder_weights": None}, same_padding(32)),
    ("unet3d", {"filters": 4, "depth": 2}, same_padding(4)),
    ("ensemble", {"member": {"name": "unet-valid", "options": {"filters": 4, "depth": 2}}},
     valid_padding(2)),
    ("ensemble", {"member": {"name": "unet", "options": {"filters": 4, "depth": 3}}},
     same_padding(8)),
])
def test_declared_geometry(name: str, options: dict, expected: Geometry) -> None:
    assert build_model(name, **options).geometry == expected


def test_valid_geometry_matches_the_model() -> None:
    model = build_model("unet-valid", filters=4, depth=2)
    g = geometry_of(model)
    assert g.valid_padding and g.pad_multiple == 1 and g.pooling_grid == 4
    assert g.output_margin(44) == model.output_margin(44) == 20
    assert g.output_size(44) == valid_output_size(44, 2)
    assert g.nearest_valid_sizes(500) == nearest_valid_sizes(500, 2)
    assert valid_padding(4).nearest_valid_size(500) == 492
    assert valid_padding(4).nearest_valid_size(100) == 188  # none below: the next one up
    with pytest.raises(UsageError, match="nearest sizes"):
        g.output_margin(45)


def test_same_padding_geometry_takes_any_size() -> None:
    g = same_padding(16)
    assert g.output_margin(37) == 0 and g.nearest_valid_size(37) == 37
    assert not g.valid_padding


def test_undeclared_modules_and_combinations() -> None:
    assert geometry_of(nn.Conv2d(3, 1, 1)) == UNDECLARED == same_padding(32)
    assert combined([same_padding(8), same_padding(8)]) == same_padding(8)
    assert combined([same_padding(8), same_padding(12)]) == same_padding(24)
    with pytest.raises(UsageError):
        combined([valid_padding(2), same_padding(4)])
    with pytest.raises(UsageError):
        Geometry(4, 4, valid_padding=True, depth=2)  # valid models never pad


def test_ensemble_of_copies_models_of_one_architecture() -> None:
    torch.manual_seed(0)
    models = [build_model("unet", filters=4, depth=2) for _ in range(2)]
    ens = ensemble_of(models)
    assert ens.unetkit_arch["name"] == "ensemble" and ens.geometry == same_padding(4)
    assert ens.members[0] is not models[0]
    assert torch.equal(ens.members[1].head.weight, models[1].head.weight)
    with pytest.raises(UsageError, match="one architecture"):
        ensemble_of([models[0], build_model("unet", filters=4, depth=3)])
