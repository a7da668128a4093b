"""Fixtures for the model tests: empty pretrained-weight caches and a one-sentence check."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants  # a submodule: not an attribute until imported
import pytest


@pytest.fixture
def weight_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Point the torch hub and Hugging Face caches at empty temporary directories."""
    torch_home, hf_cache = tmp_path / "torch_home", tmp_path / "hf_cache"
    torch_home.mkdir()
    hf_cache.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf_cache))
    return {"checkpoints": torch_home / "hub" / "checkpoints", "hf": hf_cache}


@pytest.fixture
def one_sentence() -> Callable[[str], None]:
    def check(message: str) -> None:
        assert "\n" not in message, message
        assert message.endswith("."), message
        assert not re.search(r"\.\s+[A-Z]", message), f"more than one sentence: {message}"
    return check
