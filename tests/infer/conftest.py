"""Fixtures for the inference tests: a tiny model artifact and a folder of odd-sized images."""

from __future__ import annotations

from pathlib import Path

import pytest
from infer_fixtures import tiny_model, write_images


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A run-like directory holding a tiny binary same-padding U-Net artifact in model/."""
    from unetkit.models.artifact import save_model

    run = tmp_path / "run"
    save_model(tiny_model(), run / "model")
    return run


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    write_images(tmp_path / "images")
    return tmp_path / "images"
