"""The studio's page in a real browser (headless Debian chromium via Playwright) against the
real server: gallery, overlay, painting and saving, undo, suggestions, the token, the
first-model flow and a retrain from the page."""

from __future__ import annotations

import json
import os
import shutil
from io import BytesIO
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import numpy as np
import pytest
from browser_fixtures import missing_browser
from PIL import Image

if (why := missing_browser()) is not None:
    pytest.skip(why, allow_module_level=True)

from browser_fixtures import (  # noqa: E402  (only once the browser is known to be there)
    VIEWPORT,
    WAIT_MS,
    LiveServer,
    calibrated_model,
    chromium,
    colours_at_pixels,
    next_frame,
    open_image,
    open_studio,
    segment_distance,
    stroke,
    thumbnails_load,
    to_client,
)
from serve_fixtures import make_data, read_png  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SIZE = 7  # brush diameter in image pixels (the size slider)
RADIUS = SIZE / 2


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert not errors, f"the page threw: {errors}"


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """6 images of 32x40, the first 3 with binary 0/255 masks, and a tiny binary model."""
    root = tmp_path_factory.mktemp("studio")
    data = make_data(root / "data", count=6, labelled=3)
    with LiveServer(data, calibrated_model(root / "run")) as server:
        yield server


def data_root(server: LiveServer) -> Path:
    return Path(server.studio.data.root)


def read_file(path: Path) -> np.ndarray:
    return read_png(path.read_bytes())


def set_brush(page, cls: int = 1) -> None:
    page.keyboard.press("b")
    page.keyboard.press(str(cls))
    page.locator("#size").fill(str(SIZE))


def save(page, count: int) -> None:
    """Ctrl+S, then wait for the page to report its `count`-th save (or an error)."""
    page.keyboard.press("Control+s")
    page.wait_for_selector(f"#stage[data-saved='{count}'], #statusbar[data-kind='error']",
                           timeout=WAIT_MS)
    assert page.get_attribute("#stage", "data-saved") == str(count), \
        page.inner_text("#statusbar")


def test_gallery_marks_labelled_images_and_filters(page, studio):
    open_studio(page, studio.url)
    tiles = page.locator(".tile")
    assert tiles.count() == 6
    assert page.locator(".tile.labelled").count() == 3
    assert page.locator("#page-info").inner_text() == "1–6 of 6"
    thumbnails_load(page)
    page.select_option("#filter", "unlabelled")
    page.wait_for_function("document.querySelectorAll('.tile').length === 3", timeout=WAIT_MS)
    assert page.locator(".tile.labelled").count() == 0
    page.locator("#search").fill("im4")
    page.wait_for_function("document.querySelectorAll('.tile').length === 1", timeout=WAIT_MS)
    assert page.locator(".tile").get_attribute("data-name") == "im4.png"


def test_overlay_is_drawn_exactly_where_the_prediction_is_foreground(page, studio):
    """Opacity 1 shows the class colour on predicted pixels and the bare image elsewhere
    (compared with an opacity-0 screenshot); the threshold slider re-fetches the mask."""
    pred = read_png(studio.get("api/images/im3.png/prediction"))
    assert 0.05 < pred.mean() < 0.95, "the tiny model predicts both classes"
    colour = np.array(json.loads(studio.get("api/info"))["model"]["colors"][1])
    open_studio(page, studio.url)
    open_image(page, "im3.png")
    shots = {}
    for opacity in ("0", "1"):
        page.locator("#opacity").fill(opacity)
        shots[opacity] = colours_at_pixels(page, pred.shape)
    fg = pred == 1
    assert np.abs(shots["1"][fg] - colour).max() <= 2
    assert (shots["1"][~fg] == shots["0"][~fg]).all()
    assert (np.abs(shots["1"][fg] - shots["0"][fg]).sum(-1) > 30).mean() > 0.9

    high = read_png(studio.get("api/images/im3.png/prediction", threshold=0.9))
    assert high.sum() < pred.sum()
    page.locator("#threshold").fill("0.9")
    page.wait_for_function(f"window.studio.state.prediction.reduce((a, b) => a + b, 0) === "
                           f"{int(high.sum())}", timeout=WAIT_MS)


def test_difference_and_uncertainty_layers(page, studio):
    """Difference colours disagreeing pixels only (extra vs missed); the uncertainty layer
    leaves certain pixels bare and tints uncertain ones."""
    truth = read_file(data_root(studio) / "masks" / "im0_mask.png") > 127
    pred = read_png(studio.get("api/images/im0.png/prediction")) == 1
    unsure = read_png(studio.get("api/images/im0.png/uncertainty"))
    info = json.loads(studio.get("api/info"))
    assert (pred != truth).any() and info["model"]["has_uncertainty"]
    open_studio(page, studio.url)
    open_image(page, "im0.png")
    page.locator("#opacity").fill("0")
    bare = colours_at_pixels(page, pred.shape)
    page.locator("#opacity").fill("1")
    page.click("#modes button[data-mode='difference']")
    diff = colours_at_pixels(page, pred.shape)
    assert (diff[pred == truth] == bare[pred == truth]).all()
    assert (np.abs(diff[pred & ~truth] - (240, 70, 70)) <= 2).all(), "extra: red"
    assert (np.abs(diff[~pred & truth] - (60, 150, 255)) <= 2).all(), "missed: blue"

    page.locator("#opacity").fill("0")
    low, high = unsure < np.quantile(unsure, 0.25), unsure > np.quantile(unsure, 0.75)
    page.check("#uncertainty")
    change = np.abs(colours_at_pixels(page, pred.shape) - bare).sum(-1)
    assert (change[unsure > 64] > 0).all() and change[high].mean() > 2 * change[low].mean()
    page.uncheck("#uncertainty")
    assert (colours_at_pixels(page, pred.shape) == bare).all()


def test_a_stroke_is_saved_exactly_where_it_was_painted(page, studio):
    path = data_root(studio) / "masks" / "im1_mask.png"
    before = read_file(path)
    open_studio(page, studio.url)
    open_image(page, "im1.png")
    set_brush(page, 1)
    a, b = (5.0, 8.0), (30.0, 20.0)
    stroke(page, [a, b])
    assert page.locator("#dirty-flag").is_visible()
    save(page, 1)
    after = read_file(path)
    changed = after != before
    dist = segment_distance(*before.shape, a, b)
    assert changed.any()
    assert dist[changed].max() <= RADIUS + 1, "nothing changes outside the stroke's band"
    assert changed[(dist <= RADIUS - 1) & (before == 0)].all(), "the band is painted through"
    assert (after[changed] == 255).all(), "foreground in the data set's own 0/255 masks"
    assert list((data_root(studio) / ".unetkit" / "history").glob("im1_mask*.png"))
    assert not page.locator("#dirty-flag").is_visible()
    with page.expect_download() as download:  # "Mask PNG": the class indices, 0/1 here
        page.click("#dl-mask")
    assert (read_file(Path(download.value.path())) == (after > 127)).all()


def test_undo_takes_back_the_last_stroke_and_then_the_first(page, studio):
    path = data_root(studio) / "masks" / "im2_mask.png"
    before = read_file(path)
    open_studio(page, studio.url)
    open_image(page, "im2.png")
    set_brush(page, 1)
    first, second = [(5.0, 4.0), (20.0, 4.0)], [(5.0, 27.0), (35.0, 27.0)]
    stroke(page, first)
    stroke(page, second)
    page.click("#undo")
    save(page, 1)
    after = read_file(path)
    changed = after != before
    assert changed.any()
    assert segment_distance(*before.shape, *first)[changed].max() <= RADIUS + 1
    page.keyboard.press("Control+z")
    save(page, 2)
    assert (read_file(path) == before).all()
    assert page.locator("#redo").is_enabled()


def test_fill_paints_the_clicked_closed_region_only(page, tmp_path):
    """Fill with background inside the mask's rectangle: exactly that region changes."""
    data = make_data(tmp_path / "data", count=1, labelled=1)
    path = data / "masks" / "im0_mask.png"
    before = read_file(path)
    with LiveServer(data, calibrated_model(tmp_path / "run")) as server:
        open_studio(page, server.url)
        open_image(page, "im0.png")
        page.keyboard.press("f")
        page.keyboard.press("0")
        ys, xs = np.nonzero(before)
        page.mouse.click(*to_client(page, xs.mean() + 0.5, ys.mean() + 0.5))
        save(page, 1)
        assert (before > 0).sum() > 100 and (read_file(path) == 0).all()
        page.keyboard.press("1")  # fill the (now one) background region with foreground
        page.mouse.click(*to_client(page, 0.5, 0.5))
        save(page, 2)
        assert (read_file(path) == 255).all()


def test_the_png_encoder_writes_8_bit_grayscale_both_ways(page, studio):
    """png.js, compressed (CompressionStream) and with 'stored' blocks (its fallback), over
    more than one 64 KB block: PIL reads back the exact values."""
    open_studio(page, studio.url)
    height, width = 250, 301
    encoded = page.evaluate("""async ([w, h]) => {
        const { encodeGrayPNG } = await import("./static/png.js");
        const values = new Uint8Array(w * h).map((_, i) => (i % w) * 7 + Math.floor(i / w) * 13);
        const out = [];
        for (const stored of [false, true]) {
          const blob = await encodeGrayPNG(values, w, h, { stored });
          out.push(Array.from(new Uint8Array(await blob.arrayBuffer())));
        }
        return out;
    }""", [width, height])
    yy, xx = np.mgrid[0:height, 0:width]
    expected = ((xx * 7 + yy * 13) % 256).astype(np.uint8)
    for data in encoded:
        image = Image.open(BytesIO(bytes(data)))
        assert image.mode == "L" and (np.asarray(image) == expected).all()
    assert len(encoded[1]) > width * height > len(encoded[0])


def test_opening_another_image_asks_before_dropping_unsaved_changes(page, studio):
    open_studio(page, studio.url)
    open_image(page, "im0.png")
    set_brush(page, 1)
    stroke(page, [(2.0, 2.0), (12.0, 2.0)])
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.click(".tile[data-name='im5.png']")
    page.wait_for_function("document.querySelector('#stage').dataset.image === 'im0.png'")
    assert asked and "unsaved" in asked[0]
    assert page.locator("#dirty-flag").is_visible()


def test_accepting_the_prediction_saves_it_as_the_truth(page, tmp_path):
    data = make_data(tmp_path / "data", count=3, labelled=2)
    with LiveServer(data, calibrated_model(tmp_path / "run")) as server:
        pred = read_png(server.get("api/images/im2.png/prediction"))
        open_studio(page, server.url)
        open_image(page, "im2.png")
        page.click("#accept")
        page.wait_for_selector("#stage[data-saved='1']", timeout=WAIT_MS)
        saved = [p for p in (data / "masks").iterdir() if p.name.startswith("im2")]
        assert len(saved) == 1 and ((read_file(saved[0]) > 127) == (pred == 1)).all()
        assert "labelled" in page.get_attribute(".tile[data-name='im2.png']", "class").split()


def test_zooming_past_the_preview_fetches_the_visible_region_at_full_size(page, tmp_path):
    """A 2600 px wide image opens as its 2048 px preview; zoomed in, the page fetches the
    visible window at full resolution and shows its exact pixels."""
    data = make_data(tmp_path / "data", count=1, labelled=0)
    wide = np.random.default_rng(0).integers(0, 256, (100, 2600, 3), dtype=np.uint8)
    Image.fromarray(wide).save(data / "images" / "wide.png")
    with LiveServer(data, calibrated_model(tmp_path / "run")) as server:
        open_studio(page, server.url)
        with page.expect_request(lambda r: "max_side=2048" in r.url):
            open_image(page, "wide.png")
        page.locator("#opacity").fill("0")
        page.mouse.move(*to_client(page, 1300.5, 50.5))
        with page.expect_response(lambda r: "/image?" in r.url and "w=" in r.url,
                                  timeout=WAIT_MS) as response:
            for _ in range(8):
                page.mouse.wheel(0, -600)
        query = parse_qs(urlparse(response.value.url).query)
        x, y, w, h = (int(query[k][0]) for k in "xywh")
        assert 0 <= x <= 1300 < x + w <= 2600 and 0 <= y <= 50 < y + h <= 100 and w < 200
        page.wait_for_function("window.studio.viewer.image.crop !== null", timeout=WAIT_MS)
        crop = page.evaluate("(({x, y, w, h}) => ({x, y, w, h}))(window.studio.viewer.image.crop)")
        seen = page.evaluate("window.studio.viewer.visibleRect()")
        assert crop["x"] <= seen["x"] and seen["x"] + seen["w"] <= crop["x"] + crop["w"]
        next_frame(page)
        shot = np.asarray(Image.open(BytesIO(page.screenshot())).convert("RGB"))
        px, py = to_client(page, 1300.5, 50.5)
        assert (shot[int(py), int(px)] == wide[50, 1300]).all()


def test_suggestions_list_unlabelled_images_and_open_them(page, studio):
    open_studio(page, studio.url)
    page.click(".tab[data-tab='suggest']")
    page.wait_for_selector(".suggestion", timeout=WAIT_MS)
    names = page.eval_on_selector_all(".suggestion", "els => els.map(e => e.dataset.name)")
    assert set(names) <= {"im3.png", "im4.png", "im5.png"} and names
    page.locator(".suggestion").first.click()
    page.wait_for_selector(f"#stage[data-image='{names[0]}'][data-state='ready']",
                           timeout=WAIT_MS)


def test_without_a_model_the_page_offers_to_annotate_and_train(page, tmp_path):
    """No model yet: the page says so, and painting starts from 'not annotated' (255)."""
    data = make_data(tmp_path / "data", count=3, labelled=0)
    with LiveServer(data) as server:
        open_studio(page, server.url)
        assert "No model yet" in page.locator("#banner").inner_text()
        assert page.locator("#train").inner_text() == "Train the first model"
        assert page.locator("#modes button[data-mode='prediction']").is_disabled()
        open_image(page, "im0.png")
        set_brush(page, 1)
        a, b = (8.0, 10.0), (28.0, 12.0)
        stroke(page, [a, b])
        save(page, 1)
        saved = [p for p in (data / "masks").iterdir() if p.name.startswith("im0")]
        assert len(saved) == 1
        mask = read_file(saved[0])
        dist = segment_distance(*mask.shape, a, b)
        assert set(np.unique(mask)) == {1, 255}
        assert dist[mask == 1].max() <= RADIUS + 1 and (mask[dist <= RADIUS - 1] == 1).all()


def test_with_a_token_the_page_needs_it(browser, tmp_path):
    data = make_data(tmp_path / "data", count=3, labelled=2)
    with LiveServer(data, calibrated_model(tmp_path / "run"), token="s3cret") as server:
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        response = page.goto(server.url)
        assert response.status == 401
        assert "token" in json.loads(page.inner_text("body"))["detail"]
        open_studio(page, server.url + "?token=s3cret")
        assert page.locator(".tile").count() == 3
        thumbnails_load(page)
        open_image(page, "im0.png")  # image, prediction and metrics all carry the token
        link = page.get_attribute("#dl-overlay", "href")
        assert "token=s3cret" in link and httpx.get(link).status_code == 200  # no cookie
        assert httpx.get(link.replace("token=s3cret", "")).status_code == 401
        context.close()


@pytest.mark.slow
def test_retrain_from_the_page_shows_progress_and_new_metrics(browser, tmp_path):
    data = make_data(tmp_path / "data", count=6, labelled=4)
    with LiveServer(data, calibrated_model(tmp_path / "run")) as server:
        old = server.studio.models.current.id
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        open_studio(page, server.url)
        open_image(page, "im0.png")
        page.locator("#train-epochs").fill("1")
        page.click("#train")
        page.wait_for_selector("#train-status[data-state='running']", timeout=WAIT_MS)
        assert page.locator("#train-cancel").is_visible()
        page.wait_for_selector("#train-status[data-state='done']", timeout=240_000)
        page.wait_for_selector("#train-result table", timeout=WAIT_MS)
        result = page.inner_text("#train-result")
        assert "before" in result and "after" in result and "im0.png: Dice" in result
        assert "epoch 1/1" in page.inner_text("#train-text")
        new = server.studio.models.current.id
        assert new != old
        page.wait_for_selector(f"#stage[data-model='{new}']", timeout=WAIT_MS)
        context.close()


@pytest.mark.slow
def test_cancelling_a_training_from_the_page_keeps_the_model(page, tmp_path):
    data = make_data(tmp_path / "data", count=4, labelled=3)
    with LiveServer(data, calibrated_model(tmp_path / "run")) as server:
        old = server.studio.models.current.id
        open_studio(page, server.url)
        page.locator("#train-epochs").fill("500")
        page.click("#train")
        page.wait_for_selector("#train-cancel:visible", timeout=WAIT_MS)
        page.click("#train-cancel")
        page.wait_for_selector("#train-status[data-state='cancelled']", timeout=60_000)
        assert page.locator("#train-cancel").is_hidden() and page.locator("#train").is_enabled()
        assert "unchanged" in page.inner_text("#train-text")
        assert server.studio.models.current.id == old


def test_studio_screenshot_for_the_readme(page, tmp_path):
    """With UNETKIT_SCREENSHOT=docs/studio.png, a picture of the studio with an image open
    (the demo's data and model when `make demo` has run, else the tiny test set)."""
    target = os.environ.get("UNETKIT_SCREENSHOT")
    if not target:
        pytest.skip("set UNETKIT_SCREENSHOT=docs/studio.png to write the README's picture")
    demo, run = REPO / "runs" / "demo-data", REPO / "runs" / "demo"
    if demo.is_dir() and (run / "model").is_dir():
        data, model, name = shutil.copytree(demo, tmp_path / "demo-data"), run, "0004.png"
    else:
        data = make_data(tmp_path / "data", count=6, labelled=3)
        model, name = calibrated_model(tmp_path / "run"), "im3.png"
    with LiveServer(data, model) as server:
        open_studio(page, server.url)
        open_image(page, name)
        page.click("#modes button[data-mode='both']")  # prediction filled, truth outlined
        page.locator("#opacity").fill("0.6")
        next_frame(page)
        out = REPO / target
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
    assert read_file(out).shape[:2] == (VIEWPORT["height"], VIEWPORT["width"])
