"""Masks band by band: `Predictor.predict` thresholds tiled rows as they finish instead of
holding the K×H×W probability map, and gives the very mask the map would."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from infer_fixtures import tiny_model

from unetkit.infer import predict as predict_module
from unetkit.infer.predict import Predictor
from unetkit.infer.tiling import sliding_window, tile_count


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_sink_gets_every_row_once_top_to_bottom_and_the_same_values() -> None:
    x = torch.rand(2, 70, 45)
    weights = torch.rand(3, 2, 1, 1)

    def fn(batch: torch.Tensor) -> torch.Tensor:  # a 2 -> 3 channel per-pixel map
        return torch.einsum("kc,bchw->bkhw", weights[:, :, 0, 0], batch)

    whole = sliding_window(fn, x, (32, 32), overlap=0.25, batch_size=3)
    got: list[tuple[int, torch.Tensor]] = []
    assert sliding_window(fn, x, (32, 32), overlap=0.25, batch_size=3,
                          sink=lambda first, rows: got.append((first, rows))) is None
    firsts = [f for f, _ in got]
    assert firsts[0] == 0 and firsts == sorted(firsts)
    assert [f + r.shape[1] for f, r in got[:-1]] == firsts[1:]  # no gap, no overlap
    assert firsts[-1] + got[-1][1].shape[1] == 70
    assert torch.equal(torch.cat([r for _, r in got], 1), whole)


def test_tile_count_matches_the_tiles_run() -> None:
    calls: list[int] = []

    def fn(batch: torch.Tensor) -> torch.Tensor:
        calls.append(batch.shape[0])
        return batch[:, :1]

    sliding_window(fn, torch.rand(1, 97, 131), (32, 32), overlap=0.25, batch_size=5)
    assert sum(calls) == tile_count(97, 131, 32, 0.25) == 4 * 6  # 4 rows x 6 columns
    assert tile_count(1024, 1024, 512, 0.25, align=8) == 9  # starts 0, 256, 512 per axis


@pytest.mark.parametrize("classes", [1, 3])
@pytest.mark.parametrize("float16", [False, True])
def test_band_masks_equal_masks_of_the_whole_map(classes: int, float16: bool,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if float16:  # the storage of maps too large for float32: the bands round the same way
        monkeypatch.setattr(predict_module, "FLOAT32_VALUES", 1)
    predictor = Predictor(tiny_model(classes=classes), tile=32, precision="32")
    image = _image(83, 61)
    maps: list[object] = []
    real = predict_module.sliding_window

    def spy(*args, **kwargs):
        maps.append(out := real(*args, **kwargs))
        return out

    monkeypatch.setattr(predict_module, "sliding_window", spy)
    for threshold in (0.5, 0.3):
        band = predictor.predict(image, threshold)
        whole = predictor.mask_from_probabilities(predictor.probabilities(image), threshold)
        assert band.dtype == np.uint8 and band.shape == (83, 61)
        assert np.array_equal(band, whole)
        assert len(np.unique(band)) > 1  # a real mask, not a constant
    assert maps[0::2] == [None, None]  # predict kept no probability map
    expected = torch.float16 if float16 else torch.float32
    assert all(m.dtype == expected for m in maps[1::2])


def test_whole_image_and_rescaled_predictions_keep_the_map_path() -> None:
    model = tiny_model()
    predictor = Predictor(model, precision="32")  # small: one whole-image pass
    image = _image(40, 52, seed=1)
    assert np.array_equal(predictor.predict(image),
                          predictor.mask_from_probabilities(predictor.probabilities(image)))
    model.unetkit_meta["scale"] = 0.5  # run at half size, probabilities resized back
    scaled = Predictor(model, tile=32, precision="32")
    mask = scaled.predict(_image(90, 70, seed=2))
    assert mask.shape == (90, 70)
    assert np.array_equal(mask, scaled.mask_from_probabilities(
        scaled.probabilities(_image(90, 70, seed=2))))


def test_max_pixels_lets_predict_read_images_past_the_bomb_limit(
        tmp_path, model_dir, image_folder, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image
    from typer.testing import CliRunner

    from unetkit.cli import app

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the 53x37 images are 1,961 pixels
    args = ["predict", str(model_dir), str(image_folder / "img0.png"), "--out",
            str(tmp_path / "out")]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1 and "declares 53x37 pixels" in refused.stderr
    assert not (tmp_path / "out" / "img0.png").exists()
    done = CliRunner().invoke(app, [*args, "--max-pixels", "2000"])
    assert done.exit_code == 0, done.output
    assert Image.open(tmp_path / "out" / "img0.png").size == (53, 37)
    bad = CliRunner().invoke(app, [*args, "--max-pixels", "0"])
    assert bad.exit_code == 2 and "--max-pixels 0 must be at least 1" in bad.stderr
