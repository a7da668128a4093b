"""Helpers for the studio's browser tests: the real server on a loopback port, a headless
Debian chromium driven by Playwright, and the page's own coordinates.

Import as `from browser_fixtures import ...` from tests/serve (test_browser.py).
"""

from __future__ import annotations

import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
INFER_TESTS = Path(__file__).resolve().parents[1] / "infer"
VIEWPORT = {"width": 1280, "height": 800}
WAIT_MS = 20_000


def missing_browser() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed; enable the browser tests with pip install -e '.[dev]'"
    if CHROMIUM is None:
        return "chromium is not installed; enable the browser tests with apt-get install chromium"
    return None


def calibrated_model(out: Path) -> Path:
    """A tiny untrained binary U-Net whose logits straddle 0 (the inference tests' tiny_model),
    saved as out/model: its prediction has both foreground and background."""
    import unetkit

    if str(INFER_TESTS) not in sys.path:
        sys.path.append(str(INFER_TESTS))
    from infer_fixtures import tiny_model

    unetkit.save_model(tiny_model(), out / "model")
    return out


class LiveServer:
    """The studio's real FastAPI app under uvicorn, in a thread, on a free loopback port."""

    def __init__(self, data: Path, model: Path | None = None, **settings: Any) -> None:
        import uvicorn

        from unetkit.serve.app import create_app
        from unetkit.serve.state import Settings, Studio

        self.studio = Studio.open(data, model, Settings(**settings))
        self.token = settings.get("token")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        config = uvicorn.Config(create_app(self.studio), log_level="warning", log_config=None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the studio's server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.studio.training.status()["state"] == "running":  # no fit left behind
            self.studio.training.cancel()
            deadline = time.monotonic() + 20
            while self.studio.training.status()["state"] == "running" \
                    and time.monotonic() < deadline:
                time.sleep(0.2)
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    def get(self, path: str, **params: Any) -> bytes:
        import httpx

        if self.token:
            params["token"] = self.token
        response = httpx.get(self.url + path, params=params, timeout=30)
        response.raise_for_status()
        return response.content


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Debian chromium (never Playwright's own browser download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def open_studio(page: Any, url: str) -> None:
    """Load the page and wait until it has listed the images."""
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=WAIT_MS)
    page.wait_for_selector(".tile", timeout=WAIT_MS)


def open_image(page: Any, name: str) -> None:
    """Click a thumbnail; wait for image, prediction and metrics, then for a drawn frame."""
    page.click(f".tile[data-name='{name}']")
    page.wait_for_selector(f"#stage[data-image='{name}'][data-state='ready']", timeout=WAIT_MS)
    next_frame(page)


def thumbnails_load(page: Any) -> None:
    """Wait until every thumbnail of the gallery page has loaded an image."""
    page.wait_for_function("[...document.querySelectorAll('.tile img')].every(i => "
                           "i.complete && i.naturalWidth > 0)", timeout=WAIT_MS)


def next_frame(page: Any) -> None:
    page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def to_client(page: Any, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of image point (x, y) in the open image's current view."""
    p = page.evaluate("([x, y]) => window.studio.toClient(x, y)", [x, y])
    return p["x"], p["y"]


def stroke(page: Any, points: list[tuple[float, float]]) -> None:
    """Drag the mouse with the left button through image points."""
    page.mouse.move(*to_client(page, *points[0]))
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(*to_client(page, x, y), steps=6)
    page.mouse.up()
    next_frame(page)


def stage_pixels(page: Any) -> tuple[np.ndarray, tuple[float, float]]:
    """A screenshot of the canvas stack as HxWx3 and its top-left corner in page space."""
    stage = page.locator("#stage")
    box = stage.bounding_box()
    shot = np.asarray(Image.open(BytesIO(stage.screenshot())).convert("RGB"))
    return shot, (box["x"], box["y"])


def pixel_centres(page: Any, height: int, width: int, origin: tuple[float, float]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Screenshot row and column of every image pixel's centre (H x W each)."""
    (x0, y0), (x1, y1) = to_client(page, 0.5, 0.5), to_client(page, 1.5, 1.5)
    cols = np.floor(x0 - origin[0] + (x1 - x0) * np.arange(width)).astype(int)
    rows = np.floor(y0 - origin[1] + (y1 - y0) * np.arange(height)).astype(int)
    return np.meshgrid(rows, cols, indexing="ij")


def colours_at_pixels(page: Any, shape: tuple[int, int]) -> np.ndarray:
    """The stage's colour at the centre of every pixel of the open image, H x W x 3 (int)."""
    next_frame(page)
    shot, origin = stage_pixels(page)
    rows, cols = pixel_centres(page, *shape, origin)
    return shot[rows, cols].astype(int)


def segment_distance(height: int, width: int, a: tuple[float, float],
                     b: tuple[float, float]) -> np.ndarray:
    """Distance of every pixel centre to the segment a-b (image coordinates), H x W."""
    yy, xx = np.mgrid[0:height, 0:width] + 0.5
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    t = np.clip(((xx - ax) * dx + (yy - ay) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
    return np.hypot(xx - (ax + t * dx), yy - (ay + t * dy))
