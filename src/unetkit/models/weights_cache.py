"""Pretrained weights: read from the standard caches, downloaded into them when the network
is there, and one sentence saying which file to put where when it is not.

Downloads go where torchvision and timm put them (torch hub's `checkpoints/`, the Hugging
Face cache), so weights fetched by any of those tools are reused, and theirs by us. A torch
hub file name carries the first hex digits of its SHA-256 (`name-<hash>.pth`); the download
is checked against them before it lands.
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import torch

from unetkit.errors import UnetkitError

OFFLINE_ENV = ("HF_HUB_OFFLINE", "UNETKIT_OFFLINE")


def offline() -> bool:
    """True when the user asked for no network (HF_HUB_OFFLINE=1 or UNETKIT_OFFLINE=1)."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in OFFLINE_ENV)


def hub_checkpoint(url: str) -> Path:
    """Where torch hub (and so torchvision and timm) caches the file at `url`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def cached_or_download(url: str, what: str) -> Path:
    """The cached file for `url`, downloading and verifying it first if it is missing.

    Offline or on a network error: one UnetkitError naming the file, its source and the
    place to put it (and that --encoder-weights none trains from scratch).
    """
    path = hub_checkpoint(url)
    if path.is_file():
        return path
    place = (f"put {path.name} (from {url}) at {path}, or pass --encoder-weights none to start "
             "from random weights")
    if offline():
        raise UnetkitError(f"{what} are not on this machine and downloads are off "
                           f"(HF_HUB_OFFLINE/UNETKIT_OFFLINE): {place}.")
    match = torch.hub.HASH_REGEX.search(path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # writes a temp file beside `path` and moves it there only once it checks out
        torch.hub.download_url_to_file(url, str(path), hash_prefix=match.group(1) if match
                                       else None, progress=False)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        reason = str(getattr(exc, "reason", exc)).splitlines()[0][:160]
        raise UnetkitError(f"{what} could not be downloaded ({reason}): {place}.") from exc
    return path
