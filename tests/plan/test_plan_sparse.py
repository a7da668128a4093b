"""The fingerprint notices partial labels and the plan says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from plan_fixtures import line_masks, write_pairs

from unetkit.data.prepare import prepare
from unetkit.plan.fingerprint import Fingerprint, compute_fingerprint, describe

LINE = ("masks are partial: {}% of pixels annotated; unlabeled pixels are left out of loss "
        "and metrics")


def stroke_folder(root: Path, count: int = 3, size: int = 64) -> tuple[Path, float]:
    """3 px strokes of both classes, everything else 255: 3 * (40 + 40 + 42) / 64^2 annotated."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        m = np.full((size, size), 255, np.uint8)
        m[10 + i:13 + i, 10:50] = 0  # a background stroke
        m[30:33, 12:52] = 1  # two foreground strokes (thin and long, like a membrane)
        m[40 + i:43 + i, 5:47] = 1
        img = np.where(m == 1, 200, 60).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"{i}.png")
        Image.fromarray(m).save(root / "masks" / f"{i}.png")
    (root / "classes.txt").write_text("background\ncell\nunlabeled\n")
    return root, 3 * (40 + 40 + 42) / size**2


def test_partial_masks_are_flagged_and_described(tmp_path: Path) -> None:
    root, share = stroke_folder(tmp_path / "strokes")
    fp = compute_fingerprint(prepare(root))
    assert fp.sparse and fp.annotated_fraction == pytest.approx(share, abs=1e-5)
    assert round(100 * share, 1) == 8.9
    lines = describe(fp)
    assert LINE.format("8.9") in lines
    # strokes are no objects: a 3 px stroke must not make the planner treat a class as thin
    assert fp.structure == "unknown" and fp.thin_classes == [] and fp.geometry_images == 0
    assert all(c.object_area is None for c in fp.classes)
    assert Fingerprint.from_dict(fp.to_dict()) == fp


def test_full_masks_are_not_sparse(tmp_path: Path) -> None:
    fp = compute_fingerprint(prepare(write_pairs(tmp_path / "lines", line_masks())))
    assert not fp.sparse and fp.annotated_fraction == 1.0
    assert not any(line.startswith("masks are partial") for line in describe(fp))
    assert fp.structure == "thin"
