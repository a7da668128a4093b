"""The studio's HTTP API: each route's answer checked against the data layer and the
predictor, and its bad input answered with a 4xx sentence."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image
from serve_fixtures import SIZE, blob, client, make_data, make_model, png_bytes, read_png

from unetkit.data.formats import open_dataset
from unetkit.data.loading import read_mask
from unetkit.data.prepare import resolve_mask_spec
from unetkit.data.readers import read_image
from unetkit.data.rle import rle_decode
from unetkit.infer.predict import Predictor
from unetkit.models.artifact import load_model


@pytest.fixture
def setup(tmp_path):
    """(client, data root, run): 6 images, 3 with binary 0/255 masks, a tiny binary model."""
    data = make_data(tmp_path / "data")
    run = make_model(tmp_path / "run")
    with client(data, run) as c:
        yield c, data, run


def _expected(run, data, name: str) -> np.ndarray:
    """Foreground probabilities as `unetkit predict` computes them."""
    return Predictor(load_model(run)).probabilities(read_image(data / "images" / name))[0]


def test_info_and_models(setup):
    c, data, _ = setup
    info = c.get("/api/info").json()
    assert info["data"] == {"root": str(data), "images": 6, "labelled": 3,
                            "classes": ["background", "foreground"],
                            "colors": [[0, 0, 0], [255, 64, 64]], "unlabeled_value": None,
                            "mask_convention": "binary"}
    assert info["model"]["binary"] and info["model"]["classes"] == ["background", "foreground"]
    assert info["training"]["state"] == "idle"
    models = c.get("/api/models").json()
    assert models["current"] == info["model"]["id"] and len(models["models"]) == 1
    assert models["models"][0]["name"] == "run"


def test_image_list_filters_and_pages(setup):
    c, _, _ = setup
    page = c.get("/api/images", params={"offset": 1, "limit": 2}).json()
    assert page == {"total": 6, "offset": 1, "items": [
        {"name": "im1.png", "width": SIZE[1], "height": SIZE[0], "has_mask": True},
        {"name": "im2.png", "width": SIZE[1], "height": SIZE[0], "has_mask": True}]}
    unlabelled = c.get("/api/images", params={"filter": "unlabelled"}).json()
    assert [i["name"] for i in unlabelled["items"]] == ["im3.png", "im4.png", "im5.png"]
    assert c.get("/api/images", params={"filter": "labelled", "q": "IM1"}).json()["total"] == 1
    bad = c.get("/api/images", params={"filter": "some"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("Query parameter 'filter'")


def test_image_views_downscale_and_crop(setup, tmp_path):
    c, data, _ = setup
    big = np.random.default_rng(1).integers(0, 255, (200, 320, 3), dtype=np.uint8)
    Image.fromarray(big).save(data / "images" / "big.png")
    assert read_png(c.get("/api/images/big.png/thumb").content).shape == (100, 160, 3)
    assert read_png(c.get("/api/images/big.png/image", params={"max_side": 80}).content
                    ).shape == (50, 80, 3)
    assert np.array_equal(read_png(c.get("/api/images/big.png/image",
                                         params={"max_side": 0}).content), big)
    window = c.get("/api/images/big.png/image", params={"x": 300, "y": 10, "w": 50, "h": 4})
    assert np.array_equal(read_png(window.content), big[10:14, 300:320])  # clipped at the edge
    partial = c.get("/api/images/big.png/image", params={"x": 3})
    assert partial.status_code == 400 and "needs all of x, y, w and h" in partial.json()["detail"]
    outside = c.get("/api/images/big.png/image", params={"x": 400, "y": 0, "w": 5, "h": 5})
    assert outside.status_code == 400 and "outside the 320x200 image" in outside.json()["detail"]


def test_truth_is_the_class_index_mask(setup):
    c, _, _ = setup
    assert np.array_equal(read_png(c.get("/api/images/im1.png/truth").content), blob(1))
    missing = c.get("/api/images/im4.png/truth")
    assert missing.status_code == 404 and missing.json() == {"detail": "im4.png has no mask yet."}


def test_prediction_views_match_the_predictor_and_are_cached(setup):
    c, data, run = setup
    probs = _expected(run, data, "im4.png")
    mask = read_png(c.get("/api/images/im4.png/prediction").content)
    assert np.array_equal(mask, (probs > 0.5).astype(np.uint8))
    assert np.array_equal(read_png(c.get("/api/images/im4.png/prediction",
                                         params={"threshold": 0.7}).content),
                          (probs > 0.7).astype(np.uint8))
    prob16 = read_png(c.get("/api/images/im4.png/probabilities").content)
    assert prob16.dtype == np.uint16 and np.abs(prob16 / 65535 - probs).max() < 1e-4
    entropy = read_png(c.get("/api/images/im4.png/uncertainty").content)
    p = probs.astype(np.float64).clip(1e-7, 1 - 1e-7)
    expected = -(p * np.log(p) + (1 - p) * np.log(1 - p)) / np.log(2)
    assert entropy.dtype == np.uint8 and np.abs(entropy / 255 - expected).max() < 0.01
    overlay = read_png(c.get("/api/images/im4.png/overlay").content)
    assert overlay.shape == (*SIZE, 3)
    assert len(c.app.state.studio.predictions) == 1  # predicted once for all of these views
    assert c.get("/api/images/im4.png/prediction", params={"threshold": 2}).status_code == 422


def test_metrics_over_annotated_pixels(tmp_path):
    data = make_data(tmp_path / "data", labelled=0)  # a new data set: index masks, 255 allowed
    with client(data, make_model(tmp_path / "run")) as c:
        pred = read_png(c.get("/api/images/im0.png/prediction").content)
        truth = np.full(SIZE, 255, np.uint8)
        truth[:, :20] = blob(0)[:, :20]  # the left half annotated
        assert c.put("/api/images/im0.png/mask", content=png_bytes(truth),
                     headers={"Content-Type": "image/png"}).status_code == 200
        m = c.get("/api/images/im0.png/metrics").json()
        p, t = pred[:, :20] == 1, truth[:, :20] == 1
        dice = 2 * (p & t).sum() / (p.sum() + t.sum())
        iou = (p & t).sum() / (p | t).sum()
        assert m["has_truth"] and m["dice"] == pytest.approx(dice)
        assert m["iou"] == pytest.approx(iou)
        assert m["per_class"]["foreground"]["dice"] == pytest.approx(dice)
        assert c.get("/api/images/im1.png/metrics").json() == {
            "has_truth": False, "dice": None, "iou": None, "per_class": {}}


def test_put_mask_saves_in_the_data_sets_convention(setup):
    c, data, _ = setup
    old = (data / "masks" / "im1_mask.png").read_bytes()
    new = blob(4)
    r = c.put("/api/images/im1.png/mask", content=png_bytes(new),
              headers={"Content-Type": "image/png"})
    assert r.status_code == 200
    saved, previous = r.json()["saved"], r.json()["previous"]
    assert saved == "masks/im1_mask.png" and previous.startswith(".unetkit/history/im1_mask.")
    assert (data / previous).read_bytes() == old
    assert sorted(np.unique(np.asarray(Image.open(data / saved))).tolist()) == [0, 255]
    spec = open_dataset(data)
    sample = next(s for s in spec.samples if s.name == "im1")
    assert np.array_equal(read_mask(sample, resolve_mask_spec(spec)), new)
    fresh = c.put("/api/images/im5.png/mask", content=png_bytes(blob(5)),
                  headers={"Content-Type": "image/png"})
    assert fresh.json() == {"saved": "masks/im5_mask.png", "previous": None}  # the suffix kept
    assert c.get("/api/info").json()["data"]["labelled"] == 4


def test_put_mask_bad_input(setup):
    c, data, _ = setup
    cases = [(png_bytes(np.zeros((8, 8), np.uint8)), "image/png", 400,
              "The mask is 8x8 but im0.png is 40x32; send it at full size."),
             (png_bytes(np.full(SIZE, 3, np.uint8)), "image/png", 400,
              "The mask for im0.png has value 3 but the data set has 2 classes"),
             (png_bytes(np.where(blob(0) > 0, 255, 0).astype(np.uint8)), "image/png", 400,
              "binary (0/255), which cannot mark pixels as not annotated"),
             (b"GIF89a not a png", "image/png", 400, "is not a PNG file"),
             (png_bytes(np.zeros((*SIZE, 3), np.uint8) + np.uint8([0, 9, 0])), "image/png", 400,
              "has 3 colour channels"),
             (png_bytes(blob(0)), "text/plain", 415, "A mask is sent as image/png, not "
                                                     "text/plain.")]
    before = (data / "masks" / "im0_mask.png").read_bytes()
    for body, kind, status, words in cases:
        r = c.put("/api/images/im0.png/mask", content=body, headers={"Content-Type": kind})
        assert r.status_code == status and words in r.json()["detail"], r.text
    assert (data / "masks" / "im0_mask.png").read_bytes() == before
    assert not (data / ".unetkit" / "history").exists()


def test_new_data_set_gets_index_masks_and_classes_txt(tmp_path):
    data = make_data(tmp_path / "flat", labelled=0, flat=True)
    from unetkit.serve.state import Settings, Studio

    studio = Studio.open(data, None, Settings(), ["background", "cell", "debris"])
    from fastapi.testclient import TestClient

    from unetkit.serve.app import create_app

    with TestClient(create_app(studio)) as c:
        info = c.get("/api/info").json()["data"]
        assert info["unlabeled_value"] == 255 and info["mask_convention"] == "index"
        assert info["classes"] == ["background", "cell", "debris"]
        partial = np.full(SIZE, 255, np.uint8)
        partial[:10] = 0
        partial[10:14, 5:9] = 2
        r = c.put("/api/images/im2.png/mask", content=png_bytes(partial),
                  headers={"Content-Type": "image/png"})
        assert r.json() == {"saved": "masks/im2.png", "previous": None}
        assert (data / "classes.txt").read_text() == "background\ncell\ndebris\nunlabeled\n"
        assert np.array_equal(np.asarray(Image.open(data / "masks" / "im2.png")), partial)
        assert np.array_equal(read_png(c.get("/api/images/im2.png/truth").content), partial)
        spec = open_dataset(data)  # the flat folder, as fit reads it
        sample = next(s for s in spec.samples if s.name == "im2")
        assert np.array_equal(read_mask(sample, resolve_mask_spec(spec)), partial)
        assert c.get("/api/models").json() == {"current": None, "models": []}
        for path in ("/api/images/im2.png/prediction", "/api/suggest"):
            r = c.get(path)
            assert r.status_code == 409 and "There is no model yet" in r.json()["detail"]
        assert c.post("/api/images/im2.png/accept").status_code == 409


def test_accept_saves_the_prediction(setup):
    c, data, run = setup
    expected = (_expected(run, data, "im3.png") > 0.5).astype(np.uint8)
    assert c.post("/api/images/im3.png/accept").json()["saved"] == "masks/im3_mask.png"
    assert np.array_equal(read_png(c.get("/api/images/im3.png/truth").content), expected)


def test_masks_zip_holds_every_mask(setup):
    c, data, _ = setup
    r = c.get("/api/masks.zip")
    assert r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert sorted(zf.namelist()) == [f"masks/im{i}_mask.png" for i in range(3)]
        assert zf.read("masks/im2_mask.png") == (data / "masks" / "im2_mask.png").read_bytes()


def test_predict_upload_formats(setup):
    c, data, run = setup
    upload = (data / "images" / "im5.png").read_bytes()
    expected = (_expected(run, data, "im5.png") > 0.5).astype(np.uint8)
    files = {"file": ("x.png", upload, "image/png")}
    assert np.array_equal(read_png(c.post("/api/predict", files=files).content), expected)
    rle = c.post("/api/predict", params={"format": "rle"}, files=files).json()
    assert (rle["height"], rle["width"]) == SIZE
    assert np.array_equal(rle_decode(rle["rle"], SIZE), expected)
    fractions = c.post("/api/predict", params={"format": "json"}, files=files).json()
    assert fractions["classes"] == ["background", "foreground"]
    assert fractions["fractions"]["foreground"] == pytest.approx(expected.mean())
    missing = c.post("/api/predict", files={"other": ("x.png", upload, "image/png")})
    assert missing.status_code == 422 and missing.json()["detail"] == \
        "Field 'file': Field required."
    bad = c.post("/api/predict", params={"format": "gif"}, files=files)
    assert bad.status_code == 422 and "Query parameter 'format'" in bad.json()["detail"]


def test_suggest_ranks_unlabelled_images(setup):
    c, _, _ = setup
    items = c.get("/api/suggest", params={"top": 2}).json()["items"]
    assert len(items) == 2 and {i["name"] for i in items} <= {"im3.png", "im4.png", "im5.png"}
    assert items[0]["score"] >= items[1]["score"] and items[0]["reason"]
    assert c.get("/api/suggest", params={"top": 0}).status_code == 422


def test_unexpected_errors_are_a_500_sentence(setup, monkeypatch):
    c, _, _ = setup
    from fastapi.testclient import TestClient

    studio = c.app.state.studio
    monkeypatch.setattr(studio.data, "read_image", lambda image: 1 / 0)
    r = TestClient(c.app, raise_server_exceptions=False).get("/api/images/im0.png/thumb")
    assert r.status_code == 500
    assert r.json() == {"detail": "Internal error (ZeroDivisionError) while answering "
                                  "/api/images/im0.png/thumb; the server log has the details."}


def test_a_full_prediction_queue_answers_429(tmp_path):
    data = make_data(tmp_path / "data")
    with client(data, make_model(tmp_path / "run"), queue=1) as c:
        with c.app.state.studio.models.turn():  # the one place in the queue is taken
            r = c.get("/api/images/im0.png/prediction")
        assert r.status_code == 429 and r.json()["detail"].startswith("The server is busy")
        assert c.get("/api/images/im0.png/prediction").status_code == 200


def test_sizes_are_as_the_image_is_read(setup):
    """A phone JPEG turned by its EXIF tag is listed (and must be masked) turned."""
    c, data, _ = setup
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(data / "images" / "phone.jpg",
                                                          exif=exif)
    item = c.get("/api/images", params={"q": "phone"}).json()["items"][0]
    assert (item["width"], item["height"]) == (20, 40)
    r = c.put("/api/images/phone.jpg/mask", content=png_bytes(np.zeros((40, 20), np.uint8)),
              headers={"Content-Type": "image/png"})
    assert r.status_code == 200 and r.json()["saved"] == "masks/phone_mask.png"


def test_data_folders_the_studio_cannot_edit(tmp_path):
    from unetkit.errors import UnetkitError
    from unetkit.serve.dataset import StudioData

    (tmp_path / "empty").mkdir()
    with pytest.raises(UnetkitError, match="holds no images and no images/ folder; the studio "
                                           "edits images/ . masks/ or a flat folder"):
        StudioData(tmp_path / "empty")
    split = make_data(tmp_path / "split" / "train")
    with pytest.raises(UnetkitError, match=f"split into train: serve one of them "
                                           f"\\(e.g. --data {split}\\)"):
        StudioData(tmp_path / "split")
    (tmp_path / "bare" / "images").mkdir(parents=True)
    with pytest.raises(UnetkitError, match="images holds no images; it is empty"):
        StudioData(tmp_path / "bare")
    with pytest.raises(UnetkitError, match="is not a folder"):
        StudioData(tmp_path / "missing")
