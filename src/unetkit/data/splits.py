"""Seeded train/val/test splits: random, stratified by foreground presence, grouped by key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from unetkit.data.formats.base import Sample
from unetkit.errors import UnetkitError
from unetkit.io_utils import atomic_write_text


def make_splits(samples: list[Sample], val: float = 0.2, test: float = 0.0, seed: int = 0,
                strata: list[int] | None = None) -> dict[str, list[str]]:
    """Assign sample names to train/val/test.

    Official splits from the format win. Samples with a group key (e.g. patient) are split by
    group so no group straddles two splits. `strata` (e.g. 1 if a slice shows foreground)
    keeps the proportion of each stratum the same in every split.
    """
    if all(s.split for s in samples) and any(s.split == "train" for s in samples):
        out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        for s in samples:
            out[s.split].append(s.name)
        if not out["val"] and val > 0:  # official train/test only: carve val out of train
            train = [s for s in samples if s.split == "train"]
            sub = make_splits([Sample(s.name, s.image, group=s.group) for s in train], val, 0, seed)
            out["train"], out["val"] = sub["train"], sub["val"]
        return out
    if not 0 <= val < 1 or not 0 <= test < 1 or val + test >= 1:
        raise UnetkitError(f"--val-split {val} and --test-split {test} must be in [0, 1) "
                           "and leave some data for training.")
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.group or s.name, []).append(i)
    keys = sorted(groups)
    rng = np.random.default_rng(seed)
    group_stratum = {k: int(max(strata[i] for i in groups[k])) if strata else 0 for k in keys}
    assigned: dict[str, str] = {}
    for stratum in sorted(set(group_stratum.values())):
        members = [k for k in keys if group_stratum[k] == stratum]
        order = [members[i] for i in rng.permutation(len(members))]
        n = len(order)
        n_test = int(round(n * test))
        n_val = int(round(n * val))
        if val > 0 and n_val == 0 and n - n_test >= 2:
            n_val = 1
        for j, k in enumerate(order):
            assigned[k] = "test" if j < n_test else "val" if j < n_test + n_val else "train"
    out = {"train": [], "val": [], "test": []}
    for k in keys:
        for i in groups[k]:
            out[assigned[k]].append(samples[i].name)
    if not out["train"]:
        raise UnetkitError(f"Only {len(samples)} image(s): too few to split off validation; "
                           "add images or pass --val-split 0.")
    return out


def save_splits(splits: dict[str, list[str]], path: str | Path) -> None:
    atomic_write_text(path, json.dumps(splits, indent=1))


def load_splits(path: str | Path) -> dict[str, list[str]]:
    return json.loads(Path(path).read_text())


def make_folds(samples: list[Sample], k: int, seed: int = 0,
               strata: list[int] | None = None) -> list[list[str]]:
    """K disjoint validation sets covering every sample once (grouped and stratified)."""
    if k < 2:
        raise UnetkitError(f"--folds {k} must be at least 2.")
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.group or s.name, []).append(i)
    if len(groups) < k:
        raise UnetkitError(f"--folds {k} needs at least {k} images (or groups); "
                           f"the data has {len(groups)}.")
    keys = sorted(groups)
    rng = np.random.default_rng(seed)
    stratum = {g: int(max(strata[i] for i in groups[g])) if strata else 0 for g in keys}
    folds: list[list[str]] = [[] for _ in range(k)]
    position = 0
    for value in sorted(set(stratum.values())):
        members = [g for g in keys if stratum[g] == value]
        for g in (members[i] for i in rng.permutation(len(members))):
            folds[position % k] += [samples[i].name for i in groups[g]]
            position += 1
    return folds
