"""Uncertainty maths on hand-made members, Predictor's members (ensemble, TTA, MC dropout),
tiled vs whole-image maps, and `predict --uncertainty` files read back."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from infer_fixtures import fit_meta, tiny_model
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.infer.predict import MC_SAMPLES, Predictor
from unetkit.infer.preprocess import model_input
from unetkit.infer.uncertainty import (
    max_entropy,
    mutual_information,
    predictive_entropy,
    uncertainty_maps,
)
from unetkit.infer.uncertainty_files import CSV_FIELDS, colour_map
from unetkit.models.artifact import save_model
from unetkit.models.ensemble import ensemble_of

LN2 = math.log(2)


def _binary(*ps: float) -> torch.Tensor:
    """M members' foreground probabilities for one pixel: M×1×1×1."""
    return torch.tensor(ps).view(-1, 1, 1, 1)


def test_entropy_and_mi_of_agreeing_and_disagreeing_members() -> None:
    agree = _binary(0.5, 0.5)  # both unsure: all entropy, no disagreement
    assert predictive_entropy(agree.mean(0), True).item() == pytest.approx(LN2, abs=1e-6)
    assert mutual_information(agree, True).item() == pytest.approx(0, abs=1e-6)
    split = _binary(0.0, 1.0)  # each sure, opposite: the same entropy, all of it MI
    assert predictive_entropy(split.mean(0), True).item() == pytest.approx(LN2, abs=1e-6)
    assert mutual_information(split, True).item() == pytest.approx(LN2, abs=1e-5)
    # 0.2 and 0.8: H(0.5) - H(0.2) = ln 2 + 0.2 ln 0.2 + 0.8 ln 0.8 = 0.19274
    assert mutual_information(_binary(0.2, 0.8), True).item() == pytest.approx(0.19274,
                                                                               abs=1e-5)
    three = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).view(2, 3, 1, 1)  # K = 3
    assert predictive_entropy(three.mean(0), False).item() == pytest.approx(LN2, abs=1e-5)
    assert max_entropy(3) == pytest.approx(math.log(3))


def test_maps_from_the_mean_and_expected_entropy() -> None:
    """uncertainty_maps: entropy / log K, MI = that minus the expected entropy, summaries."""
    members = torch.tensor([[0.5, 0.0, 0.2, 0.9], [0.5, 1.0, 0.8, 0.9]]).view(2, 1, 1, 4)
    expected = predictive_entropy(members, True).mean(0) / LN2
    maps = uncertainty_maps(members.mean(0), expected, True, members=2, source="ensemble")
    h01 = -(0.1 * math.log(0.1) + 0.9 * math.log(0.9)) / LN2  # 0.469: below 0.5
    np.testing.assert_allclose(maps.entropy[0], [1, 1, 1, h01], atol=1e-5)
    np.testing.assert_allclose(maps.mutual_info[0], [0, 1, 0.19274 / LN2, 0], atol=1e-5)
    assert maps.mean_entropy == pytest.approx((3 + h01) / 4, abs=1e-5)
    assert maps.uncertain_fraction == pytest.approx(0.75)
    assert maps.score == pytest.approx(maps.mean_entropy + maps.mean_mutual_info)
    one = uncertainty_maps(members[0], expected, True, members=1, source="single")
    assert one.mutual_info is None and one.mean_mutual_info is None


class Pixelwise(nn.Module):
    """A 1x1-convolution 'segmenter': shift-equivariant, so tiling cannot change it."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.head = nn.Conv2d(3, 1, 1)
        nn.init.normal_(self.head.weight, std=2.0)
        self.unetkit_arch = {"name": "pixelwise", "options": {"in_channels": 3, "classes": 1}}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def _pixel_ensemble() -> nn.Module:
    ens = ensemble_of([Pixelwise(0), Pixelwise(1)])
    ens.unetkit_meta = fit_meta()
    return ens


def _image(h: int = 37, w: int = 53, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_ensemble_maps_equal_explicit_members_whole_and_tiled() -> None:
    ens, image = _pixel_ensemble(), _image()
    whole = Predictor(ens, device="cpu", precision="32")
    x = model_input(image, ens.unetkit_meta)
    members = torch.cat([torch.sigmoid(m(x)) for m in ens.members]).detach()  # 2×1×H×W
    probs, maps = whole.probabilities_with_uncertainty(image)
    np.testing.assert_allclose(probs, members.mean(0).numpy(), atol=1e-5)
    np.testing.assert_allclose(maps.entropy, predictive_entropy(members.mean(0), True) / LN2,
                               atol=1e-5)
    np.testing.assert_allclose(maps.mutual_info, mutual_information(members, True) / LN2,
                               atol=1e-5)
    assert (maps.source, maps.members) == ("ensemble", 2)
    assert maps.mean_mutual_info > 0.01  # the two random members disagree somewhere
    tiled = Predictor(ens, device="cpu", precision="32", tile=16)
    probs_t, maps_t = tiled.probabilities_with_uncertainty(image)
    np.testing.assert_allclose(probs_t, probs, atol=1e-5)
    np.testing.assert_allclose(maps_t.entropy, maps.entropy, atol=1e-4)
    np.testing.assert_allclose(maps_t.mutual_info, maps.mutual_info, atol=1e-4)


@pytest.mark.parametrize("options, source, members", [
    ({}, "ensemble", 2), ({"tta": True}, "ensemble+tta", 8), ({"tile": 16}, "ensemble", 2)])
def test_probabilities_are_unchanged_by_uncertainty(options: dict, source: str,
                                                    members: int) -> None:
    """The mask's probabilities are the ones `probabilities` gives (a real conv ensemble)."""
    ens = ensemble_of([tiny_model(seed=0), tiny_model(seed=1)])
    ens.unetkit_meta = fit_meta()
    predictor = Predictor(ens, device="cpu", precision="32", **options)
    image = _image()
    probs, maps = predictor.probabilities_with_uncertainty(image)
    np.testing.assert_array_equal(probs, predictor.probabilities(image))
    assert (maps.source, maps.members) == (source, members)  # 4 views: 37x53 is not square


def test_tta_views_are_the_members_of_a_single_model() -> None:
    model = tiny_model(dropout=0.0)
    predictor = Predictor(model, device="cpu", precision="32", tta=True)
    probs, maps = predictor.probabilities_with_uncertainty(_image(40, 40))
    assert (maps.source, maps.members) == ("tta", 6)  # square: flips and both rotations
    np.testing.assert_array_equal(probs, predictor.probabilities(_image(40, 40)))
    assert maps.mean_mutual_info > 0  # an untrained conv net is not flip-invariant


def test_mc_dropout_is_used_seeded_and_leaves_the_model_as_it_was() -> None:
    predictor = Predictor(tiny_model(), device="cpu", precision="32")  # dropout 0.5
    image = _image()
    state = torch.random.get_rng_state()
    modes = [m.training for m in predictor.model.modules()]
    probs, maps = predictor.probabilities_with_uncertainty(image)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG untouched
    assert (maps.source, maps.members) == ("mc-dropout", MC_SAMPLES)
    assert maps.mean_mutual_info > 0
    assert [m.training for m in predictor.model.modules()] == modes  # dropout back in eval
    np.testing.assert_array_equal(probs, predictor.probabilities(image))  # deterministic mask
    _, again = predictor.probabilities_with_uncertainty(image)
    np.testing.assert_array_equal(again.entropy, maps.entropy)
    np.testing.assert_array_equal(again.mutual_info, maps.mutual_info)


def test_a_model_without_dropout_gives_entropy_only() -> None:
    predictor = Predictor(tiny_model(dropout=0.0), device="cpu", precision="32")
    _, maps = predictor.probabilities_with_uncertainty(_image())
    assert (maps.source, maps.members) == ("single", 1)
    assert maps.mutual_info is None and maps.mean_mutual_info is None
    assert 0 < maps.mean_entropy <= 1


def test_colour_map_is_fixed_scale_rgb() -> None:
    rgb = colour_map(np.array([[0.0, 1.0, 2.0]], dtype=np.float16))
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 3, 3)
    assert rgb[0, 0].sum() < 30 and rgb[0, 1].sum() > 500  # magma: dark to bright
    np.testing.assert_array_equal(rgb[0, 1], rgb[0, 2])  # above 1 is clipped


def _predict(*args: object):
    return CliRunner().invoke(app, ["predict", *(str(a) for a in args)])


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_predict_uncertainty_files_read_back(model_dir: Path, image_folder: Path,
                                             tmp_path: Path) -> None:
    plain = _predict(model_dir, image_folder, "--out", tmp_path / "plain")
    assert plain.exit_code == 0, plain.output
    out = tmp_path / "unc"
    result = _predict(model_dir, image_folder, "--out", out, "--uncertainty")
    assert result.exit_code == 0, result.output
    rows = _rows(out / "uncertainty.csv")
    assert tuple(rows[0]) == CSV_FIELDS
    assert [r["image"] for r in rows] == ["img0.png", "img1.png", "img2.png"]
    for row in rows:
        stem = Path(row["image"]).stem
        entropy = tifffile.imread(out / f"{stem}_uncertainty.tif")
        mi = tifffile.imread(out / f"{stem}_mutual_info.tif")
        assert entropy.dtype == np.float16 and entropy.shape == (37, 53) == mi.shape
        assert entropy.min() >= 0 and entropy.max() <= 1 and 0 <= mi.min() <= mi.max() <= 1
        assert float(row["mean_entropy"]) == pytest.approx(entropy.astype(float).mean(),
                                                           abs=1e-3)
        assert float(row["uncertain_fraction"]) == pytest.approx((entropy > 0.5).mean(),
                                                                 abs=0.01)
        assert (row["source"], row["members"]) == ("mc-dropout", str(MC_SAMPLES))
        picture = np.asarray(Image.open(out / f"{stem}_uncertainty.png"))
        assert picture.shape == (37, 53, 3) and picture.dtype == np.uint8
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"{stem}.png")),
                                      np.asarray(Image.open(tmp_path / "plain" / f"{stem}.png")))


def test_predict_uncertainty_of_a_fold_ensemble(image_folder: Path, tmp_path: Path) -> None:
    """A run trained with --folds saves an ensemble; its folds are the members."""
    ens = ensemble_of([tiny_model(seed=0, dropout=0.0), tiny_model(seed=1, dropout=0.0)])
    ens.unetkit_meta = fit_meta()
    save_model(ens, tmp_path / "folds" / "model")
    result = _predict(tmp_path / "folds", image_folder / "img0.png", "--out", tmp_path / "o",
                      "--uncertainty")
    assert result.exit_code == 0, result.output
    (row,) = _rows(tmp_path / "o" / "uncertainty.csv")
    assert (row["source"], row["members"]) == ("ensemble", "2")
    assert float(row["mean_mutual_info"]) > 0


def test_predict_uncertainty_single_member_leaves_mi_out(image_folder: Path,
                                                         tmp_path: Path) -> None:
    save_model(tiny_model(dropout=0.0), tmp_path / "run" / "model")
    result = _predict(tmp_path / "run", image_folder / "img1.png", "--out", tmp_path / "o",
                      "--uncertainty")
    assert result.exit_code == 0, result.output
    (row,) = _rows(tmp_path / "o" / "uncertainty.csv")
    assert (row["source"], row["members"], row["mean_mutual_info"]) == ("single", "1", "")
    assert (tmp_path / "o" / "img1_uncertainty.tif").is_file()
    assert not (tmp_path / "o" / "img1_mutual_info.tif").exists()
