"""Bad data: every problem is one sentence naming the file and what is wrong with it."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from fixtures import (
    CAMVID,
    CARS,
    OXFORD,
    PATIENTS,
    make_camvid,
    make_carvana,
    make_folder,
    make_isbi,
    make_lgg_mri,
    make_oxford_pet,
)
from PIL import Image

from unetkit.data.cache import build_cache
from unetkit.data.formats import open_dataset
from unetkit.data.prepare import resolve_mask_spec
from unetkit.errors import UnetkitError


def validate(root, **options):
    """open_dataset + the validation pass; returns ({bad name: reason}, usable count)."""
    spec = open_dataset(root, "auto", **options)
    cache = build_cache(spec.samples, resolve_mask_spec(spec), quiet=True, workers=1)
    bad = {b.name: b.reason for b in cache.bad}
    for reason in bad.values():
        assert "\n" not in reason and reason.endswith(".")
    return bad, len(cache)


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and message.endswith(".")
    return message


def test_garbage_png_is_reported_with_its_path(tmp_path):
    root = make_folder(tmp_path / "f")
    (root / "images" / "img02.png").write_bytes(b"this is not a png at all" * 10)
    bad, ok = validate(root)
    assert ok == 5 and list(bad) == ["img02"]
    assert str(root / "images" / "img02.png") in bad["img02"]
    assert "not a readable image" in bad["img02"]


def test_truncated_png_and_jpeg(tmp_path):
    root = make_carvana(tmp_path / "c", size=(96, 128))
    jpg = root / "train" / f"{CARS[0]}_01.jpg"
    jpg.write_bytes(jpg.read_bytes()[: jpg.stat().st_size // 2])
    bad, ok = validate(root)
    assert ok == 5 and "truncated" in bad[f"{CARS[0]}_01"] and str(jpg) in bad[f"{CARS[0]}_01"]

    root = make_folder(tmp_path / "f", size=(64, 64))
    png = root / "masks" / "img01_mask.png"
    png.write_bytes(png.read_bytes()[:60])
    bad, ok = validate(root)
    assert ok == 5 and str(png) in bad["img01"] and "not a readable image" in bad["img01"]


def test_missing_masks(tmp_path):
    root = make_lgg_mri(tmp_path / "lgg")
    patient = root / "kaggle_3m" / PATIENTS[0]
    mask = next(patient.glob("*_2_mask.tif"))
    mask.unlink()
    bad, ok = validate(root)
    name = mask.name.replace("_mask.tif", "")
    assert ok == 5 and list(bad) == [name]
    assert "has no mask" in bad[name] and name + ".tif" in bad[name]

    root = make_carvana(tmp_path / "c")  # no GIF and no CSV row
    (root / "train_masks" / f"{CARS[2]}_02_mask.gif").unlink()
    bad, _ = validate(root)
    assert "has no mask" in bad[f"{CARS[2]}_02"]


def test_image_mask_size_mismatch(tmp_path):
    root = make_oxford_pet(tmp_path / "pets")
    trimap = root / "annotations" / "trimaps" / f"{OXFORD[1]}.png"
    Image.fromarray(np.full((12, 16), 2, np.uint8)).save(trimap)
    bad, ok = validate(root)
    assert ok == 5
    assert bad[OXFORD[1]] == (f"{trimap} is 16x12 but its image {OXFORD[1]}.jpg is 32x24 "
                              f"(mask size mismatch).")


def test_mask_values_outside_the_declared_classes(tmp_path):
    root = make_camvid(tmp_path / "cv")
    stem = CAMVID["val"][0]
    path = root / "valannot" / f"{stem}.png"
    ann = np.asarray(Image.open(path)).copy()
    ann[5, 5] = 20
    Image.fromarray(ann).save(path)
    bad, ok = validate(root)
    assert ok == 7
    assert bad[f"val/{stem}"] == (f"{path} has value 20 but the data set declares 11 classes "
                                  f"(0..10, 11 = ignore).")

    root = make_oxford_pet(tmp_path / "pets")
    trimap = root / "annotations" / "trimaps" / f"{OXFORD[0]}.png"
    values = np.asarray(Image.open(trimap)).copy()
    values[0, 0] = 7
    Image.fromarray(values).save(trimap)
    bad, _ = validate(root)
    assert str(trimap) in bad[OXFORD[0]] and "value 7" in bad[OXFORD[0]]


def test_bad_run_length_row(tmp_path):
    root = make_carvana(tmp_path / "c", masks="csv")
    csv = root / "train_masks.csv"
    lines = csv.read_text().splitlines()
    lines[1] = lines[1].split(",")[0] + ",1 5 3 2"  # overlapping runs
    csv.write_text("\n".join(lines) + "\n")
    bad, ok = validate(root)
    name = lines[1].split(",")[0].removesuffix(".jpg")
    assert ok == 5 and f"{name}.jpg" in bad[name] and "malformed" in bad[name]


def test_empty_image_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(UnetkitError) as exc:
        open_dataset(tmp_path)
    assert one_line(exc).startswith(f"{tmp_path / 'images'} holds no images; it is empty")


def test_unsupported_extensions_only(tmp_path):
    for d in ("images", "masks"):
        (tmp_path / d).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8)).save(tmp_path / d / f"{i}.webp")
    with pytest.raises(UnetkitError) as exc:
        open_dataset(tmp_path)
    message = one_line(exc)
    assert str(tmp_path / "images") in message and "only .webp (3 files)" in message
    assert "supported types are .png, .jpg" in message


def test_nothing_recognised(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(UnetkitError) as exc:
        open_dataset(tmp_path)
    assert "has no masks/ (or labels/) folder beside it" in one_line(exc)


def test_isbi_page_count_mismatch_and_corrupt_volume(tmp_path):
    root = make_isbi(tmp_path / "isbi")
    labels = tifffile.imread(root / "train-labels.tif")
    tifffile.imwrite(root / "train-labels.tif", labels[:5], photometric="minisblack")
    with pytest.raises(UnetkitError) as exc:
        open_dataset(root)
    assert one_line(exc) == (f"{root / 'train-labels.tif'} has 5 pages but train-volume.tif "
                             f"has 6; they must match page for page.")
    (root / "train-volume.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(UnetkitError) as exc:
        open_dataset(root)
    assert one_line(exc).startswith(f"{root / 'train-volume.tif'} is not a readable TIFF")


def test_all_bad_fails_every_time(tmp_path):
    root = make_folder(tmp_path / "f")
    for p in (root / "masks").iterdir():
        Image.new("L", (5, 5)).save(p)
    spec = open_dataset(root)
    for _ in range(2):  # also when the (empty) cache was built by an earlier run
        with pytest.raises(UnetkitError) as exc:
            build_cache(spec.samples, resolve_mask_spec(spec), quiet=True, workers=1)
        assert one_line(exc).startswith("None of the 6 images could be used (img00: ")
