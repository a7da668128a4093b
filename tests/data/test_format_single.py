"""The `single` layout: one image + one label file, used as a grid of crops."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from fixtures import make_single

from unetkit.data.formats import open_dataset
from unetkit.data.loading import load_pair
from unetkit.data.prepare import peek_sizes, resolve_mask_spec
from unetkit.data.readers import read_image
from unetkit.errors import UnetkitError, UsageError


def test_detected_and_cut_into_a_grid_of_crops(tmp_path) -> None:
    root = make_single(tmp_path / "d")
    spec = open_dataset(root, "auto", grid="3")
    assert spec.format == "single" and len(spec.samples) == 9
    assert spec.samples[4].region == (24, 32, 48, 64)  # row 1, column 1 of 24x32 crops
    assert peek_sizes(spec) == [(24, 32)] * 9
    mask_spec = resolve_mask_spec(spec)
    assert mask_spec.kind == "instance"  # 16-bit labels 0..5
    full_image = read_image(root / "image.tif")
    labels = tifffile.imread(root / "labels.tif")
    for s in spec.samples:
        image, mask = load_pair(s, mask_spec)
        top, left, bottom, right = s.region
        np.testing.assert_array_equal(image, full_image[top:bottom, left:right])
        np.testing.assert_array_equal(mask, (labels[top:bottom, left:right] > 0))


def test_default_grid_keeps_at_least_four_crops(tmp_path) -> None:
    spec = open_dataset(make_single(tmp_path / "d"), "single")
    assert len(spec.samples) == 4  # a 72x96 image is below the 128 px crop side: 2x2


def test_bad_grid_and_size_mismatch(tmp_path) -> None:
    root = make_single(tmp_path / "d")
    with pytest.raises(UsageError, match="A 9x9 grid .*at most 4"):
        open_dataset(root, "single", grid=9)
    with pytest.raises(UsageError, match="whole number"):
        open_dataset(root, "single", grid="many")
    tifffile.imwrite(root / "labels.tif", np.zeros((10, 10), np.uint16))
    with pytest.raises(UnetkitError, match=r"labels.tif is 10x10 but .*image.tif is 96x72"):
        open_dataset(root, "single")


def test_three_files_are_not_single(tmp_path) -> None:
    root = make_single(tmp_path / "d")
    tifffile.imwrite(root / "other.tif", np.zeros((8, 8), np.uint16))
    with pytest.raises(UnetkitError, match="No data set layout"):
        open_dataset(root, "auto")
