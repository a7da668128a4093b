"""`unetkit scribble`: strokes that carry their true class, the asked share of pixels, and a
sparse data set that `fit` reads as it is."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage.morphology import skeletonize
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.data.formats import open_dataset
from unetkit.data.loading import read_sample_image
from unetkit.data.prepare import prepare
from unetkit.data.scribble import scribble_dataset, scribble_mask
from unetkit.data.synthetic import CLASS_NAMES, make_sample, write_folder
from unetkit.errors import UsageError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import make_isbi  # noqa: E402

runner = CliRunner()


def masks(count: int = 3, size: int = 160) -> list[np.ndarray]:
    """Synthetic 4-class masks (ellipses, polygons, thin curves on background)."""
    return [make_sample(10 + i, (size, size))[1] for i in range(count)]


def classes_of(mask: np.ndarray) -> set[int]:
    return set(np.unique(mask).tolist()) - {255}


@pytest.mark.parametrize("fraction", [0.02, 0.05, 0.15, 0.6])  # 0.6: strokes widened
def test_strokes_carry_the_true_class_and_reach_the_share(fraction: float) -> None:
    for i, mask in enumerate(masks()):
        out = scribble_mask(mask, fraction, np.random.default_rng(i))
        labelled = out != 255
        assert labelled.mean() == pytest.approx(fraction, rel=0.2)
        np.testing.assert_array_equal(out[labelled], mask[labelled])
        assert classes_of(out) == classes_of(mask)  # every class present gets strokes


def test_strokes_keep_the_classes_proportions() -> None:
    """A membrane-like mask (thin 3 px walls, 44% of the pixels, around large regions): the
    walls' long skeleton must not give them more than their share of the strokes."""
    mask = np.ones((192, 192), np.uint8)
    for k in range(0, 192, 12):
        mask[k:k + 3, :] = 0
        mask[:, k:k + 3] = 0
    out = scribble_mask(mask, 0.05, np.random.default_rng(0))
    labelled = out != 255
    wall_share = float((mask == 0).mean())
    assert (out[labelled] == 0).mean() == pytest.approx(wall_share, abs=0.06)


def test_strokes_follow_the_skeleton_of_their_region() -> None:
    """Below the widening point, every stroke pixel is within 1 px of its class's skeleton
    (3 px wide strokes), and a stroke never crosses into another class."""
    mask = masks(1)[0]
    out = scribble_mask(mask, 0.05, np.random.default_rng(0))
    for c in classes_of(mask):
        near = ndimage.binary_dilation(skeletonize(mask == c), np.ones((3, 3), bool))
        assert np.all(near[out == c])


def test_seeded_and_unlabeled_pixels_stay_unlabeled() -> None:
    mask = masks(1)[0].copy()
    mask[:, :40] = 255  # e.g. a void region of the source
    a = scribble_mask(mask, 0.05, np.random.default_rng(3))
    np.testing.assert_array_equal(a, scribble_mask(mask, 0.05, np.random.default_rng(3)))
    assert not np.array_equal(a, scribble_mask(mask, 0.05, np.random.default_rng(4)))
    assert np.all(a[:, :40] == 255)
    assert (scribble_mask(np.full((8, 8), 255, np.uint8), 0.1, np.random.default_rng(0))
            == 255).all()


def test_a_one_pixel_class_still_gets_its_stroke() -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[30, 30] = 2
    mask[40:60, 5:60] = 1
    out = scribble_mask(mask, 0.05, np.random.default_rng(0))
    assert out[30, 30] == 2 and classes_of(out) == {0, 1, 2}


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_fraction_outside_zero_one_is_refused(fraction: float) -> None:
    with pytest.raises(UsageError, match=f"--fraction {fraction!r} must be"):
        scribble_mask(np.zeros((8, 8), np.uint8), fraction, np.random.default_rng(0))


# ---------------------------------------------------------------- a data set


def test_writes_a_folder_set_that_prepare_reads_as_partial(tmp_path: Path) -> None:
    source = write_folder(tmp_path / "full", count=4, size=(96, 128), seed=2)
    result = scribble_dataset(source, tmp_path / "sparse", 0.08, seed=1, quiet=True)
    out = tmp_path / "sparse"
    assert (out / "classes.txt").read_text() == "\n".join([*CLASS_NAMES, "unlabeled"]) + "\n"
    report = json.loads((out / "scribble.json").read_text())
    annotated = pixels = 0
    for i in range(4):
        name = f"{i:04d}"
        assert os.path.samefile(out / "images" / f"{name}.png", source / "images" / f"{name}.png")
        sparse = np.asarray(Image.open(out / "masks" / f"{name}.png"))
        full = np.asarray(Image.open(source / "masks" / f"{name}.png"))
        labelled = sparse != 255
        np.testing.assert_array_equal(sparse[labelled], full[labelled])
        assert report["per_image"][name] == pytest.approx(labelled.mean(), abs=1e-6)
        annotated += int(labelled.sum())
        pixels += labelled.size
    assert report["overall_fraction"] == pytest.approx(annotated / pixels, abs=1e-6)
    assert result.overall == pytest.approx(0.08, rel=0.2)
    data = prepare(out)
    assert (data.mask.kind, data.mask.ignore_index, data.mask.class_names) == \
        ("index", 255, CLASS_NAMES)


def test_official_splits_and_decoded_images_are_kept(tmp_path: Path) -> None:
    """A volume's pages become PNGs; train/val/test folders stay splits."""
    source = make_isbi(tmp_path / "isbi")
    scribble_dataset(source, tmp_path / "s", 0.1, quiet=True)
    before, after = open_dataset(source), open_dataset(tmp_path / "s")
    assert after.format == "folder" and len(after.samples) == len(before.samples)
    for a, b in zip(sorted(after.samples, key=lambda s: s.name), before.samples, strict=True):
        np.testing.assert_array_equal(read_sample_image(a), read_sample_image(b))

    split_root = tmp_path / "split"
    for split, count in (("train", 3), ("val", 2)):
        write_folder(split_root / split, count=count, size=(48, 48), seed=len(split))
        (split_root / split / "classes.txt").unlink()
    scribble_dataset(split_root, tmp_path / "split_sparse", 0.1, quiet=True)
    spec = open_dataset(tmp_path / "split_sparse")
    assert sorted(s.name for s in spec.samples) == \
        sorted(s.name for s in open_dataset(split_root).samples)
    assert {s.split for s in spec.samples} == {"train", "val"}


def run(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def test_command_prints_the_shares_and_refuses_bad_input(tmp_path: Path) -> None:
    source = write_folder(tmp_path / "full", count=2, size=(64, 64), seed=3)
    code, text = run("scribble", source, "--out", tmp_path / "s", "--fraction", 0.1)
    assert code == 0, text
    assert "0000\t" in text and "0001\t" in text and "of pixels annotated overall" in text
    for args, code_expected, message in [
        ((source, "--out", tmp_path / "s2", "--fraction", 1.0), 2, "--fraction 1.0 must be"),
        ((source, "--out", tmp_path / "s2", "--width", 0), 2, "--width 0 must be"),
        ((source, "--out", source / "sparse"), 2, "is inside the data folder"),
        ((source, "--out", tmp_path / "s"), 2, "already exists and is not an empty folder"),
        ((tmp_path / "missing", "--out", tmp_path / "s3"), 1, "does not exist"),
    ]:
        code, text = run("scribble", *args)
        assert code == code_expected and message in text, text
        assert "Traceback" not in text
    assert not (source / "sparse").exists() and not (tmp_path / "s2").exists()


@pytest.mark.slow
def test_fit_trains_binary_on_a_scribbled_set(tmp_path: Path) -> None:
    """0/255 masks scribbled -> 0/1/255 + `unlabeled`: still a binary task (one logit)."""
    full = tmp_path / "full"
    (full / "images").mkdir(parents=True)
    (full / "masks").mkdir()
    for i in range(6):
        image, mask = make_sample(40 + i, (64, 64))
        Image.fromarray(image).save(full / "images" / f"{i}.png")
        Image.fromarray(np.uint8(mask > 0) * 255).save(full / "masks" / f"{i}.png")
    code, text = run("scribble", full, "--out", tmp_path / "sparse", "--fraction", 0.1)
    assert code == 0, text
    out = tmp_path / "run"
    code, text = run("fit", "--data", tmp_path / "sparse", "--epochs", 1, "--size", 32,
                     "--option", "filters=4", "--option", "depth=2", "--batch-size", 4,
                     "--out", out)
    assert code == 0, text
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["binary"] and config["architecture"]["options"]["classes"] == 1
    assert config["ignore_index"] == 255 and config["mask_spec"]["kind"] == "index"
    code, text = run("evaluate", out, "--data", full, "--json")
    assert code == 0, text
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["images"] == 6 and set(metrics["per_class"]) == {"background", "foreground"}
