"""The studio's guards: token, upload limits, decompression bombs, names and paths."""

from __future__ import annotations

import os
import socket
import struct
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from serve_fixtures import SIZE, blob, client, make_data, make_model, png_bytes
from typer.testing import CliRunner

from unetkit.errors import UsageError
from unetkit.serve import security
from unetkit.serve.security import access_token

PUT = {"Content-Type": "image/png"}


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height (a decompression bomb's shape)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + \
            struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.fixture
def setup(tmp_path):
    data = make_data(tmp_path / "data")
    with client(data, make_model(tmp_path / "run")) as c:
        yield c, data


def test_token_rules():
    assert access_token("127.0.0.1", None) is None and access_token("::1", None) is None
    generated = access_token("0.0.0.0", None)
    assert generated and len(generated) >= 24 and generated != access_token("0.0.0.0", None)
    assert access_token("127.0.0.1", "abc") == "abc"
    with pytest.raises(UsageError, match="--token must not be empty"):
        access_token("0.0.0.0", " ")


def test_every_request_needs_the_token(tmp_path):
    data = make_data(tmp_path / "data")
    with client(data, make_model(tmp_path / "run"), token="s3cret") as c:
        for path in ("/", "/static/app.js", "/api/info", "/api/images/im0.png/thumb",
                     "/docs", "/openapi.json"):
            r = c.get(path)
            assert r.status_code == 401, path
            assert r.json()["detail"].startswith("This request carries no token")
        assert c.get("/api/info", params={"token": "wrong"}).status_code == 401
        assert c.get("/api/info", params={"token": "s3cret"}).status_code == 200
        assert c.get("/api/info", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        page = c.get("/", params={"token": "s3cret"})
        assert page.status_code == 200 and "unetkit_token=s3cret" in page.headers["set-cookie"]
        assert c.get("/api/info").status_code == 200  # the cookie the page was given
        c.cookies.clear()
        c.cookies.set("unetkit_token", "s3cret")
        assert c.get("/api/images").status_code == 200
        assert c.put("/api/images/im0.png/mask", content=png_bytes(blob(0)),
                     headers=PUT).status_code == 200


def test_serve_command_requires_a_token_off_loopback(tmp_path, monkeypatch):
    import uvicorn

    from unetkit.cli import app

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda a, host, port, **kw: seen.update(
        app=a, host=host, port=port))
    data = make_data(tmp_path / "data")
    with socket.socket() as s:  # a port free right now
        s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(app, ["serve", "--data", str(data), "--host", "0.0.0.0",
                                      "--port", str(port)])
    assert result.exit_code == 0, result.output
    url = result.stdout.strip().splitlines()[-1]
    assert url.startswith(f"http://127.0.0.1:{port}/?token=") and seen["host"] == "0.0.0.0"
    token = url.split("token=")[1]
    with TestClient(seen["app"]) as c:
        assert c.get("/api/info").status_code == 401
        assert c.get("/api/info", params={"token": token}).status_code == 200
    local = CliRunner().invoke(app, ["serve", str(tmp_path / "nope"), "--data", str(data)])
    assert local.exit_code == 1 and f"Model path {tmp_path / 'nope'} does not exist" in \
        local.output
    assert CliRunner().invoke(app, ["serve"]).exit_code == 2  # --data is required
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        r = CliRunner().invoke(app, ["serve", "--data", str(data), "--port", str(busy)])
    assert r.exit_code == 1 and f"Cannot listen on 127.0.0.1 port {busy}" in r.output


def test_upload_byte_limit(tmp_path):
    data = make_data(tmp_path / "data")
    with client(data, make_model(tmp_path / "run"), max_upload_mb=0.001) as c:
        big = png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
        r = c.post("/api/predict", files={"file": ("big.png", big, "image/png")})
        assert r.status_code == 413
        assert r.json() == {"detail": "The upload is larger than the 0.001 MB that "
                                      "--max-upload-mb allows."}
        chunked = c.put("/api/images/im0.png/mask", content=iter([big[:800], big[800:]]),
                        headers=PUT)  # no Content-Length: counted as it arrives
        assert chunked.status_code == 413 and "--max-upload-mb" in chunked.json()["detail"]


def test_png_bomb_refused_before_decoding(setup, monkeypatch):
    c, _ = setup
    bomb = png_header(60000, 60000)
    assert len(bomb) < 100
    monkeypatch.setattr(security, "read_image", lambda path: pytest.fail("decoded"))
    monkeypatch.setattr(security, "read_raw_mask", lambda path: pytest.fail("decoded"))
    sentence = ("declares 60000x60000 pixels, more than the 100,000,000 that --max-pixels "
                "allows; it was not decoded.")
    r = c.post("/api/predict", files={"file": ("bomb.png", bomb, "image/png")})
    assert r.status_code == 413 and r.json()["detail"] == f"The upload bomb.png {sentence}"
    r = c.put("/api/images/im0.png/mask", content=bomb, headers=PUT)
    assert r.status_code == 413 and r.json()["detail"] == f"The mask for im0.png {sentence}"


def test_truncated_and_non_images(setup):
    c, _ = setup
    whole = png_bytes(np.random.default_rng(0).integers(0, 255, (*SIZE, 3), np.uint8))
    r = c.post("/api/predict", files={"file": ("cut.png", whole[:len(whole) // 2],
                                               "image/png")})
    assert r.status_code == 400
    assert r.json()["detail"].startswith("The upload cut.png is not a readable image")
    r = c.post("/api/predict", files={"file": ("a.png", b"not an image at all", "image/png")})
    assert r.status_code == 400
    assert r.json()["detail"] == "The upload a.png is not a PNG, JPEG, TIFF, GIF or BMP image."
    r = c.put("/api/images/im0.png/mask", content=png_bytes(blob(0))[:60], headers=PUT)
    assert r.status_code == 400 and "is not a readable image" in r.json()["detail"]


@pytest.mark.parametrize("raw, words", [
    ("..%2Fx.png", "steps out of its folder"), ("%2Fetc%2Fpasswd", "is an absolute path"),
    ("..%5Cim0.png", "holds a backslash"), ("im0%00.png", "holds control characters"),
    ("im%010.png", "holds control characters"), ("C:%2Fim0.png", "is an absolute path")])
def test_bad_names_refused(setup, raw, words):
    c, data = setup
    for method in ("get", "put"):
        url = f"/api/images/{raw}/" + ("thumb" if method == "get" else "mask")
        r = c.request(method.upper(), url, content=png_bytes(blob(0)), headers=PUT)
        assert r.status_code == 400 and words in r.json()["detail"], (url, r.text)
    assert not (data.parent / "x.png").exists()


def test_names_must_match_an_image(setup):
    c, data = setup
    r = c.put("/api/images/new.png/mask", content=png_bytes(blob(0)), headers=PUT)
    assert r.status_code == 404
    assert r.json() == {"detail": f"No image named 'new.png' in {data / 'images'}."}
    assert not (data / "masks" / "new.png").exists()


def test_symlinks_out_of_the_data_root_refused(setup, tmp_path):
    c, data = setup
    outside = tmp_path / "outside.png"
    Image.fromarray(blob(3) * 255).save(outside)
    before = outside.read_bytes()
    os.symlink(outside, data / "masks" / "im3_mask.png")
    r = c.put("/api/images/im3.png/mask", content=png_bytes(blob(1)), headers=PUT)
    assert r.status_code == 400
    assert r.json()["detail"] == (f"The mask file {data / 'masks' / 'im3_mask.png'} leads "
                                  f"outside the data folder {data} (to {outside}); refused.")
    assert outside.read_bytes() == before and not (data / ".unetkit" / "history").exists()
    (data / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    r = c.post("/api/jobs/predict", json={"folder": "elsewhere"})
    assert r.status_code == 400 and "leads outside the data folder" in r.json()["detail"]
    r = c.post("/api/jobs/predict", json={"folder": "../data"})
    assert r.status_code == 400 and "steps out of its folder" in r.json()["detail"]


def test_masks_folder_linked_out_refused(tmp_path):
    data = make_data(tmp_path / "data", labelled=0)
    (data / "masks").rmdir()
    (tmp_path / "elsewhere").mkdir()
    (data / "masks").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with client(data) as c:
        r = c.put("/api/images/im0.png/mask", content=png_bytes(blob(0)), headers=PUT)
        assert r.status_code == 400 and "The masks folder" in r.json()["detail"]
        assert list((tmp_path / "elsewhere").iterdir()) == []


def test_no_bad_input_gets_a_500(setup):
    c, _ = setup
    quiet = TestClient(c.app, raise_server_exceptions=False)
    bomb = png_header(60000, 60000)
    requests = [
        ("GET", "/api/images?offset=-1", None, None), ("GET", "/api/images?limit=0", None, None),
        ("GET", "/api/images/im0.png/image?max_side=x", None, None),
        ("GET", "/api/images/im0.png/image?x=1&y=1&w=0&h=1", None, None),
        ("GET", "/api/jobs/nope", None, None), ("POST", "/api/train", b"{", "application/json"),
        ("POST", "/api/train", b'{"epochs": 0}', "application/json"),
        ("POST", "/api/train", b'{"max_time": "soon"}', "application/json"),
        ("POST", "/api/jobs/predict", b'{"folder": 3}', "application/json"),
        ("POST", "/api/jobs/predict", b'{"folder": "missing"}', "application/json"),
        ("PUT", "/api/images/im0.png/mask", b"", "image/png"),
        ("PUT", "/api/images/im0.png/mask", bomb[:20], "image/png"),
        ("POST", "/api/predict", b"junk", "multipart/form-data; boundary=x"),
        ("POST", "/api/predict", b"", None), ("DELETE", "/api/info", None, None),
        ("GET", "/static/../../etc/passwd", None, None),
        ("GET", "/api/images/%FF/thumb", None, None),
        ("GET", "/api/images/im%0A0.png/thumb", None, None)]
    for method, url, body, kind in requests:
        r = quiet.request(method, url, content=body,
                          headers={"Content-Type": kind} if kind else {})
        assert 400 <= r.status_code < 500, (method, url, r.status_code, r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, str) and "Traceback" not in detail, (url, detail)
