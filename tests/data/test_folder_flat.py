"""The `folder` layout read flat (images at the top, masks/ inside) and with unlabelled=skip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetkit.data.formats import open_dataset
from unetkit.errors import UnetkitError, UsageError


def _flat(root: Path, names: list[str], masked: list[str]) -> Path:
    root.mkdir(parents=True)
    (root / "masks").mkdir()
    for n in names:
        Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(root / f"{n}.png")
    for n in masked:
        Image.fromarray(np.eye(8, dtype=np.uint8) * 255).save(root / "masks" / f"{n}_mask.png")
    return root


def test_flat_folder_pairs_images_with_masks_inside(tmp_path):
    root = _flat(tmp_path / "d", ["a", "b", "c"], ["a", "c"])
    (root / ".unetkit").mkdir()  # the studio's own folder is no image
    spec = open_dataset(root)
    assert spec.format == "folder"
    pairs = {s.name: (s.image, s.mask) for s in spec.samples}
    assert pairs == {"a": (root / "a.png", root / "masks" / "a_mask.png"),
                     "b": (root / "b.png", None),
                     "c": (root / "c.png", root / "masks" / "c_mask.png")}


def test_unlabelled_skip_leaves_images_without_masks_out(tmp_path):
    root = _flat(tmp_path / "d", ["a", "b", "c"], ["c"])
    spec = open_dataset(root, "folder", unlabelled="skip")
    assert [s.name for s in spec.samples] == ["c"]
    with pytest.raises(UsageError, match="unlabelled='maybe' of format folder must be one of "
                                         "error, skip"):
        open_dataset(root, "folder", unlabelled="maybe")
    empty = _flat(tmp_path / "e", ["a"], [])
    with pytest.raises(UnetkitError, match=f"None of the images in {empty} has a mask yet"):
        open_dataset(empty, "folder", unlabelled="skip")


def test_existing_layouts_unchanged(tmp_path):
    """images/ + masks/ still wins over images at the top; images/ alone is still no layout."""
    root = _flat(tmp_path / "d", ["top"], [])
    (root / "images").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "images" / "x.png")
    assert [s.name for s in open_dataset(root).samples] == ["x"]
    alone = tmp_path / "alone"
    (alone / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(alone / "images" / "x.png")
    with pytest.raises(UnetkitError, match="has no masks/ .or labels/. folder beside it"):
        open_dataset(alone)
