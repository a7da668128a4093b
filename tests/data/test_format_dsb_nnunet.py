"""The Data Science Bowl 2018 and nnU-Net raw layouts, and `convert --to nnunet`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.data.formats import open_dataset
from unetkit.data.loading import load_pair, read_sample_raw_mask
from unetkit.data.prepare import prepare, resolve_mask_spec
from unetkit.errors import UnetkitError
from unetkit.share.convert import convert

H, W = 28, 36
DSB_IDS = ("0a7d30b252359a10fd298b638b90cb9ada3acced4e0c0e5a3692013f432ee4e9",
           "1b44d22643830cd4f23c9deadb0bd499fb392fb2cd9526d81547d93077d983df",
           "2c3a0ea1c0c4a9a4f2b8e7a4c3d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8",
           "3d4b1fb2d1d5b0b5a3c9f8b5d4e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9")
runner = CliRunner()
TINY = ["--epochs", "1", "--size", "32", "--option", "filters=4", "--option", "depth=2",
        "--batch-size", "2"]


def _objects(seed: int) -> list[np.ndarray]:
    """Three small square nuclei; the second overlaps the first by one column."""
    rng = np.random.default_rng(seed)
    out = []
    for k, (y, x) in enumerate(((4, 4), (4, 10), (16, 22))):
        m = np.zeros((H, W), np.uint8)
        dy, dx = int(rng.integers(0, 3)), int(rng.integers(0, 3))
        m[y + dy:y + dy + 7, x + dx + k % 2:x + dx + 7] = 255
        out.append(m)
    return out


def make_dsb(root: Path, ids: tuple[str, ...] = DSB_IDS) -> Path:
    """ID/images/ID.png (RGBA, opaque alpha) + ID/masks/<hash>.png, one per object."""
    for i, case in enumerate(ids):
        (root / case / "images").mkdir(parents=True)
        (root / case / "masks").mkdir()
        objects = _objects(i)
        fg = np.maximum.reduce(objects) > 0
        rgb = np.where(fg[..., None], 200, 30).astype(np.uint8).repeat(3, axis=-1)
        rgba = np.concatenate([rgb, np.full((H, W, 1), 255, np.uint8)], axis=-1)
        Image.fromarray(rgba, "RGBA").save(root / case / "images" / f"{case}.png")
        for k, m in enumerate(objects):
            Image.fromarray(m).save(root / case / "masks" / f"m{k:02d}{case[:6]}.png")
    return root


def make_nnunet(root: Path, channels: int = 1, ignore: bool = True, cases: int = 4) -> Path:
    """dataset.json + imagesTr/CASE_000N.png + labelsTr/CASE.png with labels 0/1/2 (+3)."""
    for d in ("imagesTr", "labelsTr", "imagesTs"):
        (root / d).mkdir(parents=True)
    labels = {"background": 0, "cell": 1, "border": 2}
    if ignore:
        labels["ignore"] = 3
    for i in range(cases):
        case = f"cells_{i:03d}"
        label = np.zeros((H, W), np.uint8)
        label[4 + i:14 + i, 5:15] = 1
        label[16:24, 20 + i:30] = 2
        if ignore:
            label[0, :] = 3
        for c in range(channels):
            img = (label * 60 + 20 + 10 * c).astype(np.uint8)
            Image.fromarray(img).save(root / "imagesTr" / f"{case}_{c:04d}.png")
        Image.fromarray(label).save(root / "labelsTr" / f"{case}.png")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(root / "imagesTs" / "test_000_0000.png")
    meta = {"channel_names": {str(c): f"ch{c}" for c in range(channels)}, "labels": labels,
            "numTraining": cases, "file_ending": ".png"}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_dsb_objects_become_16_bit_instance_labels(tmp_path: Path) -> None:
    spec = open_dataset(make_dsb(tmp_path / "stage1_train"), "auto")
    assert spec.format == "dsb" and spec.mask.kind == "instance"
    assert [s.name for s in spec.samples] == sorted(DSB_IDS)
    s = spec.samples[0]
    raw = read_sample_raw_mask(s)
    assert raw.dtype == np.uint16 and sorted(np.unique(raw).tolist()) == [0, 1, 2, 3]
    objects = _objects(0)
    overlap = (objects[0] > 0) & (objects[1] > 0)
    assert overlap.any() and (raw[overlap] == 2).all()  # the later object wins
    image, mask = load_pair(s, spec.mask)
    assert image.shape == (H, W, 3)  # RGBA read as RGB
    np.testing.assert_array_equal(mask, np.maximum.reduce(objects) > 0)


def test_dsb_bad_inputs_name_the_file(tmp_path: Path) -> None:
    root = make_dsb(tmp_path / "d")
    case = root / DSB_IDS[1]
    part = sorted((case / "masks").iterdir())[1]
    Image.fromarray(np.zeros((H + 2, W), np.uint8)).save(part)
    with pytest.raises(UnetkitError, match=rf"{part.name} is {W}x{H + 2} .*mask size mismatch"):
        prepare(root, "dsb")
    for p in (case / "masks").iterdir():
        p.unlink()
    with pytest.raises(UnetkitError, match=rf"{DSB_IDS[1]}/masks holds no mask files"):
        open_dataset(root, "auto")
    (case / "masks").rmdir()
    with pytest.raises(UnetkitError, match=rf"{DSB_IDS[1]}/masks is missing"):
        open_dataset(root, "dsb")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UnetkitError, match="holds no ID/images/ID.png"):
        open_dataset(empty, "dsb")


def test_folder_splits_are_not_taken_for_dsb(tmp_path: Path) -> None:
    for split in ("train", "val"):
        for d in ("images", "masks"):
            (tmp_path / split / d).mkdir(parents=True)
            Image.fromarray(np.zeros((H, W), np.uint8)).save(tmp_path / split / d / "a.png")
    assert open_dataset(tmp_path, "auto").format == "folder"


@pytest.mark.parametrize("channels", [1, 2])
def test_nnunet_cases_channels_labels_and_ignore(tmp_path: Path, channels: int) -> None:
    spec = open_dataset(make_nnunet(tmp_path / "Dataset001_Cells", channels), "auto")
    assert spec.format == "nnunet" and len(spec.samples) == 4  # imagesTs/ not trained on
    assert spec.mask.class_names == ["background", "cell", "border"]
    assert spec.mask.ignore_index == 3
    image, mask = load_pair(spec.samples[1], spec.mask)
    assert image.shape == (H, W, channels)
    assert sorted(np.unique(mask).tolist()) == [0, 1, 2, 255]  # ignore -> internal 255
    if channels == 2:
        np.testing.assert_array_equal(image[..., 1].astype(int) - image[..., 0], 10)


def test_nnunet_bad_inputs_name_the_file(tmp_path: Path) -> None:
    root = make_nnunet(tmp_path / "d")
    label = root / "labelsTr" / "cells_002.png"
    Image.fromarray(np.zeros((H, W + 4), np.uint8)).save(label)
    with pytest.raises(UnetkitError, match=r"cells_002.png is 40x28 .*mask size mismatch"):
        prepare(root, "auto")
    label.unlink()
    with pytest.raises(UnetkitError, match=r"labelsTr/cells_002.png is missing"):
        open_dataset(root, "auto")
    (root / "dataset.json").write_text('{"labels": {"background": 0}}')
    with pytest.raises(UnetkitError, match=r"dataset.json lacks channel_names, file_ending"):
        open_dataset(root, "nnunet")
    empty = make_nnunet(tmp_path / "e", cases=0)
    with pytest.raises(UnetkitError, match=r"imagesTr holds no CASE_0000.png files"):
        open_dataset(empty, "nnunet")


@pytest.mark.parametrize("source", ["dsb", "nnunet"])
def test_convert_to_nnunet_reads_back_identically(tmp_path: Path, source: str) -> None:
    data = make_dsb(tmp_path / "src") if source == "dsb" else make_nnunet(tmp_path / "src", 2)
    out = tmp_path / "Dataset002_Out"
    result = runner.invoke(app, ["convert", str(data), "--to", "nnunet", str(out)])
    assert result.exit_code == 0, result.output
    assert "4 training cases" in result.output
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["numTraining"] == 4 and meta["file_ending"] == ".png"
    before, after = open_dataset(data), open_dataset(out)
    assert after.format == "nnunet"
    assert [s.name for s in after.samples] == [s.name for s in before.samples]
    spec_in, spec_out = resolve_mask_spec(before), resolve_mask_spec(after)
    assert spec_out.class_names == spec_in.class_names
    for a, b in zip(before.samples, after.samples, strict=True):
        (img_a, mask_a), (img_b, mask_b) = load_pair(a, spec_in), load_pair(b, spec_out)
        np.testing.assert_array_equal(img_a, img_b)
        np.testing.assert_array_equal(mask_a, mask_b)
    again = runner.invoke(app, ["convert", str(data), "--to", "nnunet", str(out)])
    assert again.exit_code != 0 and "already exists" in again.output + str(again.stderr)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["dsb", "nnunet"])
def test_fit_one_epoch(tmp_path: Path, source: str) -> None:
    data = make_dsb(tmp_path / "d") if source == "dsb" else make_nnunet(tmp_path / "d")
    out = tmp_path / "run"
    result = runner.invoke(app, ["fit", "--data", str(data), "--format", "auto",
                                 "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output + str(result.stderr)
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["data_format"] == source
    if source == "dsb":  # the composed 16-bit labels are the true objects
        evaluated = runner.invoke(app, ["evaluate", str(out), "--data", str(data), "--split",
                                        "all", "--instances", "--json"])
        assert evaluated.exit_code == 0, evaluated.output + str(evaluated.stderr)
        metrics = json.loads(evaluated.stdout[evaluated.stdout.index("{"):])
        found = metrics["instances"]
        assert found["tp"] + found["fn"] == 3 * len(DSB_IDS)


def test_convert_puts_unlabelled_images_in_images_ts(tmp_path: Path) -> None:
    data = tmp_path / "folder"
    for d in ("images", "masks"):
        (data / d).mkdir(parents=True)
    for i in range(3):
        mask = np.zeros((H, W), np.uint8)
        mask[5:15, 5 + i:20] = 255
        Image.fromarray(mask // 2).save(data / "images" / f"cell {i}.png")
        if i < 2:
            Image.fromarray(mask).save(data / "masks" / f"cell {i}.png")
    result = convert(data, "nnunet", tmp_path / "out", quiet=True)
    assert (result.training, result.test) == (2, 1)
    assert (tmp_path / "out" / "imagesTs" / "cell_2_0000.png").is_file()
    assert [s.name for s in open_dataset(tmp_path / "out").samples] == ["cell_0", "cell_1"]
