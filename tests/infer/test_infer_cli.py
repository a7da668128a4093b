"""`unetkit predict` / `evaluate` end to end on a tiny untrained model, and their bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from infer_fixtures import tiny_model, write_images
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.data.formats import MaskSpec, Sample
from unetkit.data.rle import read_rle_csv, rle_decode
from unetkit.infer.batch import make_postprocess
from unetkit.infer.evaluate import evaluate_samples
from unetkit.infer.postprocess import keep_largest, remove_small
from unetkit.infer.predict import Predictor
from unetkit.infer.seg_metrics import confusion, summarise
from unetkit.models.artifact import save_model

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def error_line(result) -> str:
    """The one line a failing command prints."""
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def skipped_lines(result) -> list[str]:
    """The `skipped: ...` reports (progress-bar redraws share the stream)."""
    return [ln[ln.index("skipped:"):] for ln in result.stderr.splitlines() if "skipped:" in ln]


def write_dataset(root: Path, count: int = 3, size: tuple[int, int] = (37, 53)) -> Path:
    """images/ and 0/255 masks/ (blobs of different sizes) with matching names."""
    write_images(root / "images", count, size)
    (root / "masks").mkdir(parents=True)
    for i in range(count):
        mask = np.zeros(size, np.uint8)
        mask[5:20, 4:25] = 255
        mask[25:29, 40:44 + i] = 255
        Image.fromarray(mask).save(root / "masks" / f"img{i}.png")
    return root


# ---------------------------------------------------------------- predict outputs


def test_predict_masks_overlay_probabilities_and_rle(tmp_path: Path, model_dir: Path,
                                                     image_folder: Path) -> None:
    out, rle = tmp_path / "out", tmp_path / "sub.csv.gz"
    res = run("predict", model_dir, image_folder, "--out", out, "--overlay", "--probabilities",
              "npy", "--rle", rle)
    assert res.exit_code == 0, res.output
    rows = read_rle_csv(rle)
    assert sorted(rows) == ["img0.png", "img1.png", "img2.png"]
    for i in range(3):
        mask = read(out / f"img{i}.png")
        assert mask.shape == (37, 53) and set(np.unique(mask)) <= {0, 255}
        assert 0.05 < (mask > 0).mean() < 0.95  # the tiny model predicts both classes
        assert read(out / f"img{i}_overlay.png").shape == (37, 53, 3)
        probs = np.load(out / f"img{i}_prob.npy")
        assert probs.dtype == np.float16 and probs.shape == (1, 37, 53)
        agree = (probs[0] > 0.5) == (mask > 0)
        assert (agree | (np.abs(probs[0] - 0.5) < 1e-3)).all()  # float16 rounds near 0.5
        decoded = rle_decode(rows[f"img{i}.png"], (37, 53), order="row")
        np.testing.assert_array_equal(decoded, mask > 0)


def test_predict_palette_tiff_probabilities_column_rle(tmp_path: Path, image_folder: Path
                                                       ) -> None:
    model = tiny_model(classes=3)
    save_model(model, tmp_path / "m")
    out, rle = tmp_path / "out", tmp_path / "sub.csv"
    res = run("predict", tmp_path / "m", image_folder / "img1.png", "--out", out, "--palette",
              "--probabilities", "tiff", "--rle", rle, "--rle-order", "column")
    assert res.exit_code == 0, res.output
    colours = read(out / "img1.png")
    assert colours.shape == (37, 53, 3)
    probs = tifffile.imread(out / "img1_prob.tif")
    assert probs.dtype == np.uint16 and probs.shape == (3, 37, 53)
    assert np.abs(probs.astype(np.int64).sum(0) - 65535).max() <= 3  # softmax sums to 1
    classes = probs.argmax(0)
    assert len(np.unique(classes)) > 1
    # pixels of one class share one colour, different classes differ
    palette = {tuple(colours[classes == c][0]) for c in np.unique(classes)}
    assert len(palette) == len(np.unique(classes))
    decoded = rle_decode(read_rle_csv(rle)["img1.png"], (37, 53), order="column")
    expected = Predictor(model).predict(read(image_folder / "img1.png")) > 0
    assert (decoded == expected).mean() > 0.999


def test_predict_engine_onnx_writes_the_same_masks(tmp_path: Path, model_dir: Path,
                                                   image_folder: Path) -> None:
    # parity at one precision: torch pinned to float32, as onnxruntime runs
    assert run("predict", model_dir, image_folder, "--out", tmp_path / "t", "--precision",
               "32").exit_code == 0
    res = run("predict", model_dir, image_folder, "--out", tmp_path / "o", "--engine", "onnx")
    assert res.exit_code == 0, res.output
    for i in range(3):
        a, b = read(tmp_path / "t" / f"img{i}.png"), read(tmp_path / "o" / f"img{i}.png")
        assert (a == b).mean() >= 0.999
    res = run("predict", model_dir, image_folder, "--out", tmp_path / "x", "--engine", "tvm")
    assert res.exit_code == 2 and "--engine 'tvm' is unknown" in error_line(res)


def test_instances_and_cleanup_flags(tmp_path: Path, model_dir: Path, image_folder: Path
                                     ) -> None:
    raw, clean = tmp_path / "raw", tmp_path / "clean"
    assert run("predict", model_dir, image_folder, "--out", raw).exit_code == 0
    res = run("predict", model_dir, image_folder, "--out", clean, "--min-size", 30,
              "--keep-largest", "--instances", "--no-split-touching")
    assert res.exit_code == 0, res.output
    for i in range(3):
        before = read(raw / f"img{i}.png") // 255
        after = read(clean / f"img{i}.png") // 255
        np.testing.assert_array_equal(after, keep_largest(remove_small(before, 30, [1]), [1]))
        labels = tifffile.imread(clean / f"img{i}_instances.tif")
        assert labels.dtype == np.uint16 and labels.shape == before.shape
        np.testing.assert_array_equal(labels > 0, after > 0)
        assert labels.max() <= 1  # one object left, labelled 1 (or none)
        assert ndimage.label(before)[1] > 1  # so the clean-up had something to do


def test_make_postprocess_on_a_hand_made_mask() -> None:
    mask = np.zeros((20, 30), np.uint8)
    mask[1:9, 1:9] = 1  # 64 px
    mask[12:15, 20:23] = 1  # 9 px
    mask[15:19, 2:6] = 2  # 16 px of class 2
    mask[0, 29] = 2  # 1 px of class 2
    assert make_postprocess(3) is None
    small = make_postprocess(3, min_size=10)(mask)
    assert small[12:15, 20:23].sum() == 0 and small[0, 29] == 0
    assert (small[1:9, 1:9] == 1).all() and (small[15:19, 2:6] == 2).all()
    largest = make_postprocess(3, keep_largest=True)(mask)
    assert largest[12:15, 20:23].sum() == 0 and largest[0, 29] == 0
    assert (largest[15:19, 2:6] == 2).all()
    assert mask[12, 20] == 1  # the input is not modified


def test_label_png_instances_split_touching(tmp_path: Path) -> None:
    """--instances default splits touching objects (distance-transform watershed)."""
    from unetkit.infer.postprocess import label_instances

    yy, xx = np.mgrid[:40, :60]
    two = ((yy - 20) ** 2 + (xx - 20) ** 2 <= 100) | ((yy - 20) ** 2 + (xx - 38) ** 2 <= 100)
    assert label_instances(two, split_touching=True).max() == 2
    assert label_instances(two, split_touching=False).max() == 1


# ---------------------------------------------------------------- tiling


def test_tiled_prediction_matches_whole_image() -> None:
    """Tiles start on the model's pooling grid (multiples of 2^depth), so apart from the
    context a tile lacks at its edges (down-weighted by the blending) they see what the
    whole image sees."""
    model = tiny_model()
    image = np.asarray(Image.fromarray(np.random.default_rng(5).integers(
        0, 256, (20, 24, 3), dtype=np.uint8)).resize((97, 80), Image.BILINEAR))
    whole = Predictor(model).probabilities(image)
    tiled = Predictor(model, tile=48, overlap=0.25).probabilities(image)
    assert tiled.shape == whole.shape == (1, 80, 97)
    diff = np.abs(tiled - whole)
    assert diff.mean() < 1e-3 and diff.max() < 0.05
    assert ((tiled > 0.5) == (whole > 0.5)).mean() > 0.995


def test_valid_padding_tiles_cover_every_pixel() -> None:
    """Overlap-tiles of a valid-padding model equal one whole-image pass over the image
    mirrored by the model's margin: every pixel predicted, with the context it would have."""
    import torch
    import torch.nn.functional as F
    from infer_fixtures import MEAN, STD

    model = tiny_model("unet-valid")
    image = np.random.default_rng(6).integers(0, 256, (100, 130, 3), dtype=np.uint8)
    probs = Predictor(model, precision="32").probabilities(image)  # tile 60: 20 px out
    assert probs.shape == (1, 100, 130)
    # the reference: normalise, mirror 20 px (reflect, as the tiles do) and 2 more on the
    # right so both sides are sizes the model takes (140 -> 100, 172 -> 132), one pass
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        out = model(F.pad(x, (20, 22, 20, 20), mode="reflect"))
    assert tuple(out.shape) == (1, 1, 100, 132)
    whole = torch.sigmoid(out)[0, :, :, :130].numpy()
    assert whole.std() > 0.1  # a reference that tells pixels apart
    np.testing.assert_allclose(probs, whole, atol=1e-4, rtol=0)


# ---------------------------------------------------------------- evaluate


def test_evaluate_json_keys_postprocess_and_instances(tmp_path: Path, model_dir: Path) -> None:
    data = write_dataset(tmp_path / "data")
    res = run("evaluate", model_dir, "--data", data, "--json", "--keep-largest", "--min-size",
              20, "--instances", "--out", tmp_path / "eval")
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout)  # --json prints only the JSON
    for key in ("images", "pixel_accuracy", "mean_iou", "mean_dice", "per_class", "dice", "iou",
                "mean_iou_foreground", "mean_dice_foreground", "micro_iou", "micro_dice",
                "micro_iou_foreground", "micro_dice_foreground", "confusion"):
        assert key in metrics, key
    assert metrics["mean_dice_foreground"] == pytest.approx(metrics["dice"])
    assert (tmp_path / "eval" / "confusion.png").is_file()  # beside metrics.json
    assert sum(map(sum, metrics["confusion"])) > 0
    found = metrics["instances"]
    assert found["iou_threshold"] == 0.5 and found["tp"] + found["fn"] == 6  # 2 per image
    # the same numbers by hand: predict, clean up, pool the confusion matrices
    predictor = Predictor(tiny_model(), precision="32")  # evaluate's float32
    conf = np.zeros((2, 2), np.int64)
    for i in range(3):
        pred = predictor.predict(read(data / "images" / f"img{i}.png"))
        pred = keep_largest(remove_small(pred, 20, [1]), [1])
        conf += confusion(pred, read(data / "masks" / f"img{i}.png") // 255, 2)
    expected = summarise(conf, ["background", "foreground"], True)
    for key, value in expected.items():
        if key == "per_class":
            for name, scores in value.items():
                assert metrics[key][name] == pytest.approx(scores), name
        elif key == "confusion":  # pixel counts: exact
            assert metrics[key] == value
        else:
            assert metrics[key] == pytest.approx(value), key
    # without clean-up the scores are those of the raw masks: the flags are measurable
    plain = json.loads(run("evaluate", model_dir, "--data", data, "--json", "--out",
                           tmp_path / "eval2").stdout)
    assert plain["micro_dice"] != metrics["micro_dice"] and "instances" not in plain
    on_onnx = json.loads(run("evaluate", model_dir, "--data", data, "--json", "--engine", "onnx",
                             "--out", tmp_path / "eval3").stdout)
    assert on_onnx["dice"] == pytest.approx(plain["dice"], abs=1e-3)
    # the JSON says how it was computed; evaluate's default is float32 on every CPU
    assert (plain["engine"], plain["precision"]) == ("torch", "32")
    assert (on_onnx["engine"], on_onnx["precision"]) == ("onnx", "32")
    assert (tmp_path / "eval" / "per_image.csv").read_text().splitlines()[0].endswith(
        "instance_f1,instance_tp,instance_fp,instance_fn")


class TruthPredictor:
    """Predicts a fixed mask: lets instance scoring be checked exactly."""

    binary, class_names = True, ["background", "foreground"]
    engine, precision, meta = "truth", "32", {}

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask

    def probabilities(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        return self.mask[None].astype(np.float32)  # certain: 1 on the mask, 0 elsewhere

    def mask_from_probabilities(self, probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        return (probs[0] > threshold).astype(np.uint8)

    def predict(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        return self.mask


def test_instance_scores_against_16_bit_labels(tmp_path: Path) -> None:
    yy, xx = np.mgrid[:40, :60]
    labels = np.zeros((40, 60), np.uint16)
    labels[(yy - 20) ** 2 + (xx - 20) ** 2 <= 100] = 300
    labels[(yy - 20) ** 2 + (xx - 41) ** 2 <= 100] = 7  # touches object 300, same area
    labels[2:6, 50:56] = 1000
    tifffile.imwrite(tmp_path / "m.tif", labels)
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "i.png")
    sample = Sample(name="i", image=tmp_path / "i.png", mask=tmp_path / "m.tif")
    predictor = TruthPredictor((labels > 0).astype(np.uint8))
    # the model's spec says binary; 16-bit labels are still read as objects, not >127
    split = evaluate_samples(predictor, [sample], MaskSpec(kind="binary"), quiet=True,
                             instances=True)
    assert split.metrics["dice"] == 1.0
    assert split.metrics["instances"]["tp"] == 3 and split.metrics["instances"]["f1"] == 1.0
    merged = evaluate_samples(predictor, [sample], MaskSpec(kind="binary"), quiet=True,
                              instances=True, split_touching=False)
    found = merged.metrics["instances"]
    assert (found["tp"], found["fp"], found["fn"]) == (1, 1, 2)  # one blob for two discs
    assert found["precision"] == pytest.approx(1 / 2)
    assert found["recall"] == pytest.approx(1 / 3)
    assert merged.per_image[0]["instance_f1"] == pytest.approx(0.4)


# ---------------------------------------------------------------- bad input


def test_unreadable_image_is_skipped_and_the_rest_written(tmp_path: Path, model_dir: Path,
                                                          image_folder: Path) -> None:
    (image_folder / "broken.png").write_bytes(b"not a png at all")
    res = run("predict", model_dir, image_folder, "--out", tmp_path / "out", "--rle",
              tmp_path / "r.csv")
    assert res.exit_code == 1
    skipped = skipped_lines(res)
    assert len(skipped) == 1 and "broken.png is not a readable image" in skipped[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "img0.png", "img1.png", "img2.png"]
    assert sorted(read_rle_csv(tmp_path / "r.csv")) == ["img0.png", "img1.png", "img2.png"]
    assert "skipped 1 bad file(s)" in res.stderr


def test_folder_without_images(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    res = run("predict", model_dir, tmp_path / "empty", "--out", tmp_path / "out")
    assert res.exit_code == 1
    assert "No images" in error_line(res) and str(tmp_path / "empty") in error_line(res)


def test_model_directory_problems(tmp_path: Path, model_dir: Path, image_folder: Path) -> None:
    artifact = model_dir / "model"
    weights = artifact / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    for engine in ("torch", "onnx"):
        res = run("predict", model_dir, image_folder, "--out", tmp_path / "o", "--engine",
                  engine)
        assert res.exit_code == 1 and "model.safetensors is damaged" in error_line(res)
    res = run("export", model_dir, "--onnx", tmp_path / "m.onnx")
    assert res.exit_code == 1 and "model.safetensors is damaged" in error_line(res)
    assert not (tmp_path / "m.onnx").exists()
    weights.unlink()
    res = run("evaluate", model_dir, "--data", tmp_path)
    assert res.exit_code == 1 and "model.safetensors is missing" in error_line(res)
    weights.write_bytes(good)
    (artifact / "config.json").unlink()
    res = run("predict", model_dir, image_folder, "--out", tmp_path / "o")
    assert res.exit_code == 1
    assert "is not a model: no config.json" in error_line(res)


@pytest.mark.parametrize("image_channels,model_channels", [(2, 3), (3, 4)])
def test_wrong_number_of_channels(tmp_path: Path, image_channels: int, model_channels: int
                                  ) -> None:
    save_model(tiny_model(channels=model_channels), tmp_path / "m")
    image = np.random.default_rng(0).integers(0, 256, (20, 30, image_channels), dtype=np.uint8)
    if image_channels == 2:
        path = tmp_path / "two.tif"
        tifffile.imwrite(path, image, photometric="minisblack", planarconfig="contig")
    else:
        path = tmp_path / "rgb.png"
        Image.fromarray(image).save(path)
    res = run("predict", tmp_path / "m", path, "--out", tmp_path / "out")
    assert res.exit_code == 1
    line = skipped_lines(res)
    assert len(line) == 1
    assert f"{path.name} has {image_channels} channels but the model expects " \
           f"{model_channels}" in line[0]
