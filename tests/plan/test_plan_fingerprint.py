"""The data fingerprint on hand-made masks with known statistics."""

from __future__ import annotations

import numpy as np
from plan_fixtures import disc_masks, line_masks, write_pairs

from unetkit.data.prepare import prepare
from unetkit.data.synthetic import write_folder
from unetkit.plan.fingerprint import Fingerprint, compute_fingerprint


def test_blobs_known_fraction_count_and_size(disc_folder):
    fp = compute_fingerprint(prepare(disc_folder))
    masks = disc_masks()
    fg = sum(int(m.sum()) for m in masks) / sum(m.size for m in masks)
    assert fp.images == 4 and fp.channels == 1 and fp.bit_depth == 8
    assert fp.height == {"min": 64, "median": 64, "max": 64} and fp.same_size
    assert fp.mask_kind == "binary" and fp.class_names == ["background", "foreground"]
    c = fp.classes[1]
    assert abs(c.pixel_fraction - fg) < 1e-4
    assert c.image_fraction == 0.75  # the last image has no discs
    assert c.objects_per_image == 2
    area = int(masks[0].sum()) // 2  # both discs have the same area
    assert c.object_area["median"] == area
    assert abs(c.object_diameter["median"] - 2 * np.sqrt(area / np.pi)) < 0.1
    assert 10 < c.object_diameter["median"] < 14  # radius 6
    assert not c.thin and c.elongation < 5
    assert fp.structure == "blobs" and fp.thin_classes == []
    assert fp.minority().index == 1


def test_thin_lines_are_thin(line_folder):
    fp = compute_fingerprint(prepare(line_folder))
    c = fp.classes[1]
    assert c.thin, c
    assert c.thickness <= 4 and c.elongation >= 10
    assert fp.structure == "thin" and fp.thin_classes == ["foreground"]
    assert not fp.classes[0].thin  # the squares between the lines are blobs


def test_thin_background_like_membranes(tmp_path):
    """Membrane data: the foreground is cell interiors and the thin class is the background."""
    masks = [1 - m for m in line_masks(count=3)]
    fp = compute_fingerprint(prepare(write_pairs(tmp_path / "membrane", masks)))
    assert fp.classes[0].thin and not fp.classes[1].thin
    assert fp.thin_classes == ["background"]
    assert fp.minority().index == 0


def test_multiclass_synthetic_round_trips(tmp_path):
    root = write_folder(tmp_path / "synth", count=6, size=(48, 64), channels=3, seed=2)
    fp = compute_fingerprint(prepare(root))
    assert fp.num_classes == 4 and fp.channels == 3 and fp.width["min"] == 64
    assert abs(sum(c.pixel_fraction for c in fp.classes) - 1) < 1e-3
    assert len(fp.intensity["mean"]) == 3
    assert Fingerprint.from_dict(fp.to_dict()) == fp
    assert compute_fingerprint(prepare(root)) == fp  # deterministic


def test_scenes_are_upright_microscopy_is_not(tmp_path, disc_folder, line_folder):
    from plan_fixtures import write_scenes

    fp = compute_fingerprint(prepare(write_scenes(tmp_path / "scenes")))
    assert fp.upright and fp.layout_shift["vertical"] > 0.6
    assert fp.layout_shift["vertical"] > 2 * fp.layout_shift["horizontal"]
    for folder in (disc_folder, line_folder):
        fp = compute_fingerprint(prepare(folder))
        assert not fp.upright and fp.layout_shift["vertical"] < 0.15, fp.layout_shift


def test_left_right_layout_alone_is_not_upright(tmp_path):
    """Masks split into left and right halves differ top/bottom by nothing."""
    masks = [np.zeros((32, 32), np.uint8) for _ in range(3)]
    for m in masks:
        m[:, 16:] = 1
    fp = compute_fingerprint(prepare(write_pairs(tmp_path / "halves", masks)))
    assert fp.layout_shift == {"vertical": 0.0, "horizontal": 1.0}
    assert not fp.upright
    old = fp.to_dict()
    old.pop("layout_shift")  # plans written before the field existed still load
    assert not Fingerprint.from_dict(old).upright
