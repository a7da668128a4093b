"""A user's own model registered before the first lookup does not hide the built-in ones."""

from __future__ import annotations

import subprocess
import sys


def test_register_before_first_lookup_keeps_the_builtins() -> None:
    code = """
import torch
from unetkit.models import registry
registry.register("mine", lambda in_channels=3, classes=1: torch.nn.Conv2d(in_channels, classes, 1),
                  "a 1x1 convolution")
names = registry.model_names()
assert "mine" in names and "unet" in names and "ensemble" in names, names
assert registry.get_entry("mine").description == "a 1x1 convolution"
print(len(names))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 6
