"""encode_mask is the inverse of reading: written, then read back through the data layer,
every convention gives the same class indices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetkit.data.formats import MaskSpec, Sample, open_dataset
from unetkit.data.loading import read_mask
from unetkit.data.mask_writer import encode_mask
from unetkit.errors import UnetkitError

INDEX = np.array([[0, 1, 2, 2], [1, 0, 0, 2], [2, 2, 1, 0]], dtype=np.uint8)
BINARY = (INDEX > 0).astype(np.uint8)


def _save(raw: np.ndarray, path: Path) -> Path:
    if raw.dtype == np.uint16:
        tifffile.imwrite(path, raw)
    else:
        Image.fromarray(raw).save(path)
    return path


def _read_back(raw: np.ndarray, spec: MaskSpec, tmp_path: Path, suffix: str = ".png"
               ) -> np.ndarray:
    mask = _save(raw, tmp_path / f"m{suffix}")
    return read_mask(Sample(name="m", image=mask, mask=mask), spec)


@pytest.mark.parametrize("foreground", [255, 1])
def test_binary_round_trip_keeps_the_data_sets_values(tmp_path, foreground):
    spec = MaskSpec(kind="binary")
    raw = encode_mask(BINARY, spec, foreground=foreground)
    assert sorted(np.unique(raw).tolist()) == [0, foreground]
    assert np.array_equal(_read_back(raw, spec, tmp_path), BINARY)


def test_index_palette_instance_and_map_round_trip(tmp_path):
    index = MaskSpec(kind="index", class_names=["a", "b", "c"])
    assert np.array_equal(_read_back(encode_mask(INDEX, index), index, tmp_path), INDEX)
    colors = [[0, 0, 0], [255, 0, 0], [0, 128, 255]]
    palette = MaskSpec(kind="palette", class_names=["a", "b", "c"], colors=colors)
    raw = encode_mask(INDEX, palette)
    assert raw.shape == (3, 4, 3) and raw[0, 2].tolist() == [0, 128, 255]
    assert np.array_equal(_read_back(raw, palette, tmp_path), INDEX)
    background = np.zeros_like(INDEX)  # all black: read as grey, still the palette's class 0
    assert np.array_equal(_read_back(encode_mask(background, palette), palette, tmp_path),
                          background)
    instance = MaskSpec(kind="instance")
    two = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1]], dtype=np.uint8)
    raw = encode_mask(two, instance)
    assert raw.dtype == np.uint16 and raw.max() == 2  # two objects, labelled apart
    assert np.array_equal(_read_back(raw, instance, tmp_path, ".tif"), two)
    trimap = MaskSpec(kind="map", class_names=["pet", "background"], ignore_index=255,
                      value_map={1: 0, 2: 1, 3: None})
    with_unlabeled = np.where(INDEX == 2, 255, INDEX).astype(np.uint8)
    raw = encode_mask(with_unlabeled, trimap)
    assert sorted(np.unique(raw).tolist()) == [1, 2, 3]
    assert np.array_equal(_read_back(raw, trimap, tmp_path), with_unlabeled)


def test_unlabeled_pixels_written_as_the_ignore_value(tmp_path):
    partial = INDEX.copy()
    partial[0, :2] = 255
    spec = MaskSpec(kind="index", class_names=["a", "b", "c"], ignore_index=255)
    assert np.array_equal(_read_back(encode_mask(partial, spec), spec, tmp_path), partial)
    camvid_like = MaskSpec(kind="index", class_names=["a", "b", "c"], ignore_index=11)
    raw = encode_mask(partial, camvid_like)
    assert raw[0, 0] == 11
    assert np.array_equal(_read_back(raw, camvid_like, tmp_path), partial)


def test_what_a_convention_cannot_store_is_one_sentence():
    partial = BINARY.copy()
    partial[0, 0] = 255
    with pytest.raises(UnetkitError, match=r"^The mask has pixels marked as not annotated "
                                           r"\(255\), but this data set's binary masks cannot "
                                           r"store them; annotate every pixel\.$"):
        encode_mask(partial, MaskSpec(kind="binary"))
    with pytest.raises(UnetkitError, match=r"has value 3 but the data set has 3 classes"):
        encode_mask(INDEX + (INDEX == 2), MaskSpec(kind="index", class_names=["a", "b", "c"]))
    with pytest.raises(UnetkitError, match="foreground as 1 or 255"):
        encode_mask(BINARY, MaskSpec(kind="binary"), foreground=7)


def test_saved_folder_masks_read_back_through_open_dataset(tmp_path):
    """The whole data layer: a flat folder with a written mask is read as the same classes."""
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "masks").mkdir()
    spec = MaskSpec(kind="index", class_names=["a", "b", "c"])
    _save(encode_mask(INDEX, spec), tmp_path / "masks" / "a.png")
    sample = open_dataset(tmp_path).samples[0]
    assert np.array_equal(read_mask(sample, spec), INDEX)
