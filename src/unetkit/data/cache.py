"""Decode every image once into memory-mapped uint8 arrays; later epochs never decode again.

The cache lives in a directory keyed by the files' content and the preprocessing settings,
so editing an image or changing the scale builds a fresh one. Images of different sizes are
stored ragged (one flat buffer plus offsets). Building the cache is also the data
validation pass: every decode or mask problem is collected with the file it came from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetkit.data.formats.base import MaskSpec, Sample
from unetkit.data.loading import load_pair
from unetkit.errors import UnetkitError
from unetkit.progress import progress

CACHE_VERSION = 3  # 3: EXIF orientation applied, CMYK TIFF and LA decoded as colour/grey


def cache_root() -> Path:
    env = os.environ.get("UNETKIT_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "unetkit"


def _file_digest(path: Path | None, h: hashlib._Hash, memo: dict[Path, bytes] | None = None
                 ) -> None:
    """Feed a file's content hash into `h`; a missing or unreadable file hashes as such (the
    validation pass reports it), and `memo` hashes a file shared by many samples (a
    multi-page TIFF volume) only once."""
    if path is None:
        h.update(b"-")
        return
    if memo is not None and path in memo:
        h.update(memo[path])
        return
    inner = hashlib.sha1()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                inner.update(chunk)
        digest = inner.digest()
    except OSError:
        digest = b"missing"
    if memo is not None:
        memo[path] = digest
    h.update(digest)


def cache_key(samples: list[Sample], spec: MaskSpec, settings: dict) -> str:
    h = hashlib.sha1()
    h.update(json.dumps({"v": CACHE_VERSION, "settings": settings, "mask": spec.__dict__},
                        sort_keys=True, default=str).encode())
    memo: dict[Path, bytes] = {}
    for s in samples:
        h.update(f"{s.name}|{s.image_page}|{s.mask_page}|{s.mask_rle is not None}|"
                 f"{s.region}".encode())
        _file_digest(s.image, h, memo)
        _file_digest(s.mask, h, memo)
        if s.mask_rle:
            h.update(s.mask_rle.encode())
        for part in (s.mask_parts or ()) + (s.channels or ()):
            _file_digest(part, h, memo)
        if s.drop_alpha:
            h.update(b"|rgb")
    return h.hexdigest()[:20]


@dataclass
class BadSample:
    name: str
    reason: str


def _map(path: Path) -> np.ndarray:
    """Memory-map a uint8 file; an empty one (no usable samples) cannot be mapped."""
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=np.uint8)
    return np.memmap(path, dtype=np.uint8, mode="r")


class ArrayCache:
    """Ragged uint8 image/mask storage backed by two memory-mapped files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        index = json.loads((directory / "index.json").read_text())
        self.names: list[str] = index["names"]
        self.shapes = [tuple(s) for s in index["shapes"]]
        self.offsets = np.asarray(index["offsets"], dtype=np.int64)
        self.mask_offsets = np.asarray(index["mask_offsets"], dtype=np.int64)
        self.bad = [BadSample(**b) for b in index["bad"]]
        self.has_instances = bool(index.get("has_instances", False))
        self._images = _map(directory / "images.u8")
        self._masks = _map(directory / "masks.u8")

    def __len__(self) -> int:
        return len(self.names)

    def __reduce__(self) -> tuple:
        """Pickle as the directory: processes started for training (DDP spawn, loader
        workers) map the same files instead of receiving a copy of every image."""
        return (ArrayCache, (self.directory,))

    def image(self, i: int) -> np.ndarray:
        h, w, c = self.shapes[i]
        start = self.offsets[i]
        return self._images[start:start + h * w * c].reshape(h, w, c)

    def mask(self, i: int) -> np.ndarray:
        h, w, _ = self.shapes[i]
        start = self.mask_offsets[i]
        return self._masks[start:start + h * w].reshape(h, w)


def build_cache(samples: list[Sample], spec: MaskSpec, scale: float | str = 1.0,
                workers: int | None = None, quiet: bool = False) -> ArrayCache:
    """Return the cache for these samples, decoding (and validating) them only if needed.

    `scale` is a factor applied to every image, or "stretch:HxW" to resize all to one size.
    """
    settings = {"scale": scale}
    directory = cache_root() / cache_key(samples, spec, settings)
    if (directory / "index.json").is_file():
        cache = _complete(directory)
        if cache is not None:
            return _checked(cache, len(samples))
        shutil.rmtree(directory, ignore_errors=True)  # damaged (e.g. disk full): rebuild
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names, shapes, offsets, mask_offsets, bad = [], [], [], [], []
    pos = mpos = 0
    workers = workers or min(4, os.cpu_count() or 1)
    with open(tmp / "images.u8", "wb") as fimg, open(tmp / "masks.u8", "wb") as fmask, \
            ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda s: _safe_load(s, spec, scale), samples)
        for sample, result in progress(zip(samples, results, strict=True), total=len(samples),
                                       desc="Reading data", disable=quiet):
            if isinstance(result, BadSample):
                bad.append(result)
                continue
            image, mask = result
            names.append(sample.name)
            shapes.append(list(image.shape))
            offsets.append(pos)
            mask_offsets.append(mpos)
            fimg.write(image.tobytes())
            fmask.write(mask.tobytes())
            pos += image.size
            mpos += mask.size
    index = {"names": names, "shapes": shapes, "offsets": offsets, "mask_offsets": mask_offsets,
             "bad": [b.__dict__ for b in bad]}
    (tmp / "index.json").write_text(json.dumps(index))
    try:
        os.replace(tmp, directory)
    except OSError:  # another process built it first
        shutil.rmtree(tmp, ignore_errors=True)
    return _checked(ArrayCache(directory), len(samples))


def _complete(directory: Path) -> ArrayCache | None:
    """The cache in `directory` if its index reads and its files hold every byte it lists."""
    try:
        cache = ArrayCache(directory)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    image_bytes = sum(h * w * c for h, w, c in cache.shapes)
    mask_bytes = sum(h * w for h, w, _ in cache.shapes)
    if cache._images.size != image_bytes or cache._masks.size != mask_bytes:
        return None
    return cache


def _checked(cache: ArrayCache, total: int) -> ArrayCache:
    """The cache, unless not one sample could be used (also when it was built earlier)."""
    if not cache.names:
        reasons = "; ".join(f"{b.name}: {b.reason.rstrip('.')}" for b in cache.bad[:3])
        raise UnetkitError(f"None of the {total} images could be used ({reasons}).")
    return cache


def _safe_load(sample: Sample, spec: MaskSpec, scale: float | str) -> tuple | BadSample:
    try:
        return load_pair(sample, spec, scale)
    except UnetkitError as exc:
        return BadSample(sample.name, str(exc))
