"""`unetkit serve`: the command function; cli.py registers it (with its error guard)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from unetkit.errors import UnetkitError, UsageError


def check_port(host: str, port: int) -> None:
    """One sentence instead of uvicorn's error when the address is taken or not ours."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UnetkitError(f"Cannot listen on {host} port {port} ({exc.strerror or exc}); "
                               "choose another --port or --host.") from None


def studio_url(host: str, port: int, token: str | None) -> str:
    """The address to open: loopback stays as given, IPv6 in brackets, the token appended."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def serve(
    model: Annotated[Path | None, typer.Argument(help="Run or model artifact directory to "
                                                 "start from (none: train the first one "
                                                 "in the studio).")] = None,
    data: Annotated[Path | None, typer.Option(help="Data set root (images/ and masks/) or "
                                              "a folder of images (masks go into masks/ "
                                              "inside).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback "
                                      "requires a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    token: Annotated[str | None, typer.Option(help="Access token (generated when --host is "
                                              "not loopback and none is given).")] = None,
    classes: Annotated[str, typer.Option(help="Class names for a data set with no masks yet, "
                                         "comma-separated, background first.")
                       ] = "background,foreground",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload accepted, in MB.")
                             ] = 50.0,
    max_pixels: Annotated[int, typer.Option(help="Largest image accepted, in pixels (checked "
                                            "from the header, before decoding).")
                          ] = 100_000_000,
) -> None:
    """Open the web studio on a data set: look at predictions, correct them, train again.

    Example: unetkit serve runs/mine --data path/to/images

    No model yet: unetkit serve --data path/to/images --classes background,cell
    """
    import uvicorn
    from PIL import Image

    from unetkit.serve.app import create_app
    from unetkit.serve.security import access_token
    from unetkit.serve.state import Settings, Studio

    if data is None:
        raise UsageError("--data is required: the folder of images to annotate.")
    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port} must be between 1 and 65535.")
    if max_upload_mb <= 0 or max_pixels <= 0:
        raise UsageError("--max-upload-mb and --max-pixels must be positive.")
    names = [n.strip() for n in classes.split(",") if n.strip()]
    if len(names) < 2:
        raise UsageError(f"--classes {classes!r} must name at least 2 classes, e.g. "
                         "background,cell.")
    secret = access_token(host, token)
    settings = Settings(host=host, port=port, token=secret, max_upload_mb=max_upload_mb,
                        max_pixels=max_pixels, device=None if device == "auto" else device)
    # the readers refuse files above PIL's limit; uploads are bounded by --max-pixels instead
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, max_pixels)
    check_port(host, port)
    studio = Studio.open(data, model, settings, names)
    current = studio.models.current
    print(f"unetkit studio: {studio.data.root}, "
          f"{'model ' + current.name if current else 'no model yet'}", file=sys.stderr)
    print(studio_url(host, port, secret), flush=True)
    uvicorn.run(create_app(studio), host=host, port=port, log_level="warning")
