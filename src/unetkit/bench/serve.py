"""`unetkit bench serve`: the studio's HTTP API under load.

A real server (uvicorn on a free loopback port, the app `unetkit serve` runs) with a tiny
model over synthetic images; `clients` threads, each with its own connection, send
`requests` uploads to POST /api/predict between them. Reported: errors (anything but 200;
must be 0), latency percentiles per request, and requests per second over the whole run.
Latency includes the queue: predictions run one at a time, so it grows with the clients.
"""

from __future__ import annotations

import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.bench.measure import say, sig
from unetkit.errors import UnetkitError, UsageError

START_TIMEOUT_S = 30.0
DISTINCT_IMAGES = 8


def run_serve(requests: int = 200, clients: int = 8, size: int = 64,
              quiet: bool = False) -> dict[str, Any]:
    """Start a studio, load it with `requests` predictions from `clients` clients."""
    try:
        import httpx
    except ImportError as exc:
        raise UsageError("bench serve needs httpx (pip install httpx).") from exc
    if requests < 1 or clients < 1 or size < 16:
        raise UsageError("--requests and --clients must be at least 1 and --size at least 16.")
    from unetkit.device import cpu_model

    with tempfile.TemporaryDirectory(prefix="unetkit-bench-serve-") as tmp:
        server, thread, url, uploads = _start(Path(tmp), size)
        try:
            say(f"serve: {requests} requests from {clients} clients to {url}", quiet)
            latencies: list[float] = []
            errors: list[str] = []

            def client(k: int) -> None:
                with httpx.Client(base_url=url, timeout=120.0) as c:
                    for i in range(k, requests, clients):
                        t0 = time.perf_counter()
                        try:
                            r = c.post("/api/predict", files={"file": (
                                f"{i}.png", uploads[i % len(uploads)], "image/png")})
                            ok = r.status_code == 200
                            why = f"{r.status_code} {r.text[:120]}"
                        except httpx.HTTPError as exc:
                            ok, why = False, f"{type(exc).__name__}: {exc}"
                        latencies.append(time.perf_counter() - t0)
                        if not ok:
                            errors.append(why)

            t0 = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(client, range(clients)))
            wall = time.perf_counter() - t0
        finally:
            server.should_exit = True
            thread.join(timeout=START_TIMEOUT_S)
    ms = np.asarray(latencies) * 1000
    return {"requests": requests, "clients": clients, "image_size": size,
            "errors": len(errors), "first_errors": errors[:3],
            "p50_ms": sig(float(np.percentile(ms, 50))),
            "p95_ms": sig(float(np.percentile(ms, 95))),
            "max_ms": sig(float(ms.max())), "requests_per_s": sig(requests / wall),
            "wall_s": round(wall, 2), "endpoint": "POST /api/predict (png)",
            "model": "unet, 4 filters, depth 2, 4 classes", "cpu": cpu_model()}


def _start(tmp: Path, size: int) -> tuple[Any, threading.Thread, str, list[bytes]]:
    """A studio server on a free loopback port, its thread and URL; distinct PNG uploads."""
    import io

    import torch
    import uvicorn
    from PIL import Image

    from unetkit.data.synthetic import make_sample, write_folder
    from unetkit.models.artifact import save_model
    from unetkit.models.registry import build_model
    from unetkit.serve.app import create_app
    from unetkit.serve.state import Settings, Studio

    data = write_folder(tmp / "data", count=DISTINCT_IMAGES, size=(size, size))
    torch.manual_seed(0)
    model = build_model("unet", in_channels=3, classes=4, filters=4, depth=2)
    save_model(model, tmp / "run" / "model",
                       meta={"class_names": ["background", "ellipse", "polygon", "curve"],
                             "binary": False})
    app = create_app(Studio.open(data, tmp / "run", Settings(port=0)))
    # log_config=None: leave logging alone (uvicorn would bind handlers to the sys.stderr of
    # the moment, which a caller such as a test runner may close while the server still runs)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           log_config=None))
    thread = threading.Thread(target=server.run, name="unetkit-bench-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise UnetkitError("The bench server did not start on 127.0.0.1.")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    uploads = []
    for seed in range(DISTINCT_IMAGES):
        buffer = io.BytesIO()
        Image.fromarray(make_sample(1000 + seed, (size, size))[0]).save(buffer, format="PNG")
        uploads.append(buffer.getvalue())
    return server, thread, f"http://127.0.0.1:{port}", uploads


def format_serve(result: dict[str, Any]) -> str:
    lines = [f"unetkit bench serve — {result['requests']} predictions of "
             f"{result['image_size']}px images from {result['clients']} clients "
             f"({result['endpoint']}, {result['model']}, {result['cpu']})",
             f"errors: {result['errors']}",
             f"latency: p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, "
             f"max {result['max_ms']} ms",
             f"throughput: {result['requests_per_s']} requests/s "
             f"({result['wall_s']} s in all)"]
    lines += [f"  {e}" for e in result["first_errors"]]
    return "\n".join(lines)
