"""Shared fixtures: an isolated cache directory and tiny data sets made on the fly."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("UNETKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread; OpenMP spin-waiting on a busy 2-core machine
    made them ~100x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def synthetic_folder(tmp_path: Path) -> Path:
    from unetkit.data.synthetic import write_folder

    return write_folder(tmp_path / "synth", count=8, size=(48, 64), channels=3, seed=1)


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not present on this machine")
    return path
