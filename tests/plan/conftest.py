"""Fixtures for the plan tests: tiny folders with known statistics."""

from __future__ import annotations

from pathlib import Path

import pytest
from plan_fixtures import disc_masks, line_masks, write_pairs


@pytest.fixture
def disc_folder(tmp_path: Path) -> Path:
    return write_pairs(tmp_path / "discs", disc_masks())


@pytest.fixture
def line_folder(tmp_path: Path) -> Path:
    return write_pairs(tmp_path / "lines", line_masks())
