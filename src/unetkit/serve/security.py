"""The studio's guards: the access token, upload limits, uploaded images decoded safely, and
paths that cannot leave the data folder.

The server binds 127.0.0.1 by default; on any other host a token is required (generated when
not given, printed in the URL as Jupyter does). Uploads are refused by size before they are
read whole and by declared pixel count before they are decoded; decoding goes through the
data layer's readers, so an upload is read exactly like a file of the data set.
"""

from __future__ import annotations

import re
import secrets
import tempfile
from collections.abc import Awaitable, Callable
from http.cookies import CookieError, SimpleCookie
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
from fastapi import HTTPException
from starlette.responses import JSONResponse

from unetkit.data.readers import declared_size, read_image, read_raw_mask
from unetkit.errors import UnetkitError, UsageError
from unetkit.serve.errors import ApiError, TooLarge

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
COOKIE = "unetkit_token"
# magic bytes -> the suffix the data layer's readers choose their decoder by
MAGIC = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8", ".jpg"), (b"II*\x00", ".tif"),
         (b"MM\x00*", ".tif"), (b"II+\x00", ".tif"), (b"MM\x00+", ".tif"), (b"GIF8", ".gif"),
         (b"BM", ".bmp"))
Scope = dict[str, Any]
Asgi = Callable[[Scope, Callable, Callable], Awaitable[None]]


def access_token(host: str, token: str | None) -> str | None:
    """The token the server requires: the one given, a new one off loopback, else none."""
    if token is not None and not token.strip():
        raise UsageError("--token must not be empty.")
    if token:
        return token
    return None if host in LOCAL_HOSTS else secrets.token_urlsafe(24)


def request_token(scope: Scope) -> str | None:
    """The token a request carries: ?token=, `Authorization: Bearer`, or the cookie."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    if query:
        return query[0]
    headers = {k.decode("latin-1").lower(): v.decode("latin-1")
               for k, v in scope.get("headers", [])}
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    try:
        cookie = SimpleCookie(headers.get("cookie", ""))
    except CookieError:
        return None
    return cookie[COOKIE].value if COOKIE in cookie else None


class TokenGate:
    """ASGI middleware: every HTTP request must carry the token (401 JSON otherwise).

    A page (or /docs) opened with a valid ?token= also gets it as a cookie, so the links,
    images and API calls it makes need not repeat it.
    """

    def __init__(self, app: Asgi, token: str | None) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if self.token is None or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = request_token(scope)
        refused = given is None or not secrets.compare_digest(given.encode(),
                                                              self.token.encode())
        if refused and scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # policy violation
            return
        if refused:
            what = "carries a wrong token" if given else "carries no token"
            response = JSONResponse({"detail": f"This request {what}; open the URL with "
                                     "?token=... that `unetkit serve` printed, or send "
                                     "Authorization: Bearer TOKEN."}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, self._with_cookie(scope, send))

    def _with_cookie(self, scope: Scope, send: Callable) -> Callable:
        if b"token=" not in scope.get("query_string", b""):
            return send
        cookie = f"{COOKIE}={self.token}; Path=/; SameSite=Strict".encode("latin-1")

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"set-cookie", cookie)]}
            await send(message)

        return sending


class BodyLimit:
    """ASGI middleware: request bodies above `max_mb` MB get 413, checked on the declared
    length first and on the bytes actually received (no Content-Length) as they arrive."""

    def __init__(self, app: Asgi, max_mb: float) -> None:
        self.app, self.max_mb, self.max_bytes = app, max_mb, int(max_mb * 2**20)

    def _message(self) -> str:
        return f"The upload is larger than the {self.max_mb:g} MB that --max-upload-mb allows."

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse({"detail": self._message()}, status_code=413)(scope, receive,
                                                                              send)
            return
        received = 0

        async def limited() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, limited, send)


def check_name(name: str, what: str = "Image name") -> str:
    """A relative posix name that stays where it is put, or one sentence (400)."""
    if not name:
        raise ApiError(f"{what} is empty.")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ApiError(f"{what} {name!r} holds control characters; refused.")
    if "\\" in name:
        raise ApiError(f"{what} {name!r} holds a backslash; names use forward slashes.")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise ApiError(f"{what} {name!r} is an absolute path; names are relative to the data "
                       "folder.")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise ApiError(f"{what} {name!r} steps out of its folder (empty, . or .. parts); "
                       "refused.")
    return name


def inside(path: Path, root: Path, what: str) -> Path:
    """`path` if its resolved target (symbolic links followed) is inside `root`, else 400."""
    target, base = Path(path).resolve(), Path(root).resolve()
    if target != base and base not in target.parents:
        raise ApiError(f"{what} {path} leads outside the data folder {root} (to {target}); "
                       "refused.")
    return path


def image_suffix(data: bytes) -> str | None:
    """The file suffix of an image's bytes, from its magic number (None: no image)."""
    return next((suffix for magic, suffix in MAGIC if data.startswith(magic)), None)


def check_pixels(data: bytes, what: str, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the header; refused (413) above `max_pixels`, before decoding."""
    size = declared_size(BytesIO(data)) if image_suffix(data) else None
    if size is None:
        raise ApiError(f"{what} is not a PNG, JPEG, TIFF, GIF or BMP image.")
    width, height = size
    if width * height > max_pixels:
        raise TooLarge(f"{what} declares {width}x{height} pixels, more than the "
                       f"{max_pixels:,} that --max-pixels allows; it was not decoded.")
    return width, height


def _decode(data: bytes, what: str, max_pixels: int, reader: Callable) -> np.ndarray:
    """Decode uploaded bytes with a data-layer reader (via a private temp file)."""
    check_pixels(data, what, max_pixels)
    with tempfile.TemporaryDirectory(prefix="unetkit-upload-") as folder:
        path = Path(folder) / f"upload{image_suffix(data)}"
        path.write_bytes(data)
        try:
            return reader(path)
        except UnetkitError as exc:
            raise ApiError(str(exc).replace(str(path), what)) from None


def decode_image(data: bytes, what: str, max_pixels: int) -> np.ndarray:
    """An uploaded image as HxWxC uint8, read as the data layer reads image files."""
    return _decode(data, what, max_pixels, read_image)


def decode_index_mask(data: bytes, what: str, max_pixels: int) -> np.ndarray:
    """An uploaded 8-bit class-index PNG as HxW uint8 (255 = not annotated)."""
    if image_suffix(data) != ".png":
        raise ApiError(f"{what} is not a PNG file; send an 8-bit class-index PNG.")
    raw = _decode(data, what, max_pixels, read_raw_mask)
    if raw.ndim != 2:
        raise ApiError(f"{what} has {raw.shape[-1]} colour channels; send a single-channel "
                       "8-bit class-index PNG.")
    if raw.dtype != np.uint8:
        if raw.size and int(raw.max()) > 255:
            raise ApiError(f"{what} holds values up to {int(raw.max())}; class indices are "
                           "0..254 and 255 = not annotated.")
        raw = raw.astype(np.uint8)
    return raw
