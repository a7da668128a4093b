"""Fold eval-mode BatchNorm into the preceding convolution: the same outputs, less work.

Pairs are found by running the model once with hooks, so any architecture whose BN input is
exactly a conv output is covered (unetkit's U-Nets, timm's BatchNormAct2d encoders). Measured
by `unetkit bench speed`: 1.16x (classic U-Net) and 1.07x (MobileNetV2 U-Net) faster
inference on CPU with identical masks; `Predictor` applies it by default.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(conv name, bn name) for each BatchNorm2d whose input is exactly a Conv2d's output."""
    convs: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []
    keep: list[torch.Tensor] = []  # keep tensors alive so their ids stay unique
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d) and not isinstance(mod, nn.ConvTranspose2d):
            def conv_hook(_m: nn.Module, _inp: Any, out: torch.Tensor, name: str = name) -> None:
                convs[id(out)] = name
                keep.append(out)
            hooks.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.BatchNorm2d):
            def bn_hook(_m: nn.Module, inp: Any, _out: Any, name: str = name) -> None:
                conv = convs.get(id(inp[0]))
                if conv is not None:
                    pairs.append((conv, name))
                keep.append(inp[0])
            hooks.append(mod.register_forward_pre_hook(
                lambda m, inp, name=name: bn_hook(m, inp, None, name)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    seen_conv = [c for c, _ in pairs]
    # a conv feeding two BNs (or called twice) cannot be folded into either
    return [(c, b) for c, b in dict.fromkeys(pairs) if seen_conv.count(c) == 1]


def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, int, int]:
    """An eval-mode copy with Conv+BN folded; returns (copy, pairs folded, BN layers)."""
    model = copy.deepcopy(model).eval()
    total = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    folded = 0
    for conv_name, bn_name in conv_bn_pairs(model, example):
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        if not bn.track_running_stats or bn.running_mean is None:
            continue
        replacement: nn.Module
        if type(bn) is nn.BatchNorm2d:
            replacement = nn.Identity()
        elif hasattr(bn, "act") and hasattr(bn, "drop"):  # timm BatchNormAct2d
            replacement = nn.Sequential(bn.drop, bn.act)
        else:
            continue
        _set_module(model, conv_name, fuse_conv_bn_eval(conv, bn))
        _set_module(model, bn_name, replacement)
        folded += 1
    for attr in ("unetkit_meta", "unetkit_arch", "input_normalization"):
        if hasattr(model, attr):
            setattr(model, attr, copy.deepcopy(getattr(model, attr)))
    return model, folded, total
