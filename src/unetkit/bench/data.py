"""`unetkit bench data`: the training data pipeline's throughput, cold and cached.

A synthetic data set (unetkit.data.synthetic.write_folder) goes through what `fit` does:
`prepare` (decode, validate, write the memory-mapped cache), channel statistics,
`SegmentationDataset` with `build_transforms(size, "default", train=True)`, and fit's
DataLoader (its seeded sampler, batch, workers as fit picks them). Cold = the first pass,
decoding the files and building the cache, then one epoch of augment + collate; cached =
an epoch later on, reading the memory-mapped cache. The cache lives in a temporary
directory, so the user's cache is neither used nor touched.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from unetkit.bench.measure import ratio, say, sig


def _epoch(loader: Any, epoch: int) -> tuple[int, float]:
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    n = 0
    t0 = time.perf_counter()
    for x, _ in loader:
        n += int(x.shape[0])
    return n, time.perf_counter() - t0


def run_data(images: int = 64, image_size: int = 256, size: list[int] | None = None,
             batch: int = 8, workers: int | None = None, quiet: bool = False,
             worker_lever: bool = False, epochs: int = 2) -> dict[str, Any]:
    """Images per second of decode + augment + collate, cold and from the cache."""
    from unetkit.data.dataset import channel_stats
    from unetkit.data.prepare import prepare
    from unetkit.data.synthetic import write_folder
    from unetkit.device import pick_device
    from unetkit.train.defaults import loader_workers
    from unetkit.train.loaders import make_loader, training_dataset

    size = list(size or [128, 128])
    device = pick_device()
    if workers is None:  # as fit picks them
        workers = loader_workers(device.type)
    old_cache = os.environ.get("UNETKIT_CACHE")
    with tempfile.TemporaryDirectory(prefix="unetkit-bench-data-") as tmp:
        say(f"data: writing {images} synthetic {image_size}x{image_size} images", quiet)
        folder = write_folder(Path(tmp) / "data", count=images, size=(image_size, image_size),
                              channels=3, seed=7)
        os.environ["UNETKIT_CACHE"] = str(Path(tmp) / "cache")
        try:
            say("data: cold pass (decode + cache + one epoch of augment and collate)", quiet)
            t0 = time.perf_counter()
            data = prepare(folder, "auto", 1.0)
            idx = list(range(len(data.cache)))
            mean, std = channel_stats(data.cache, idx, 3)
            prepare_s = time.perf_counter() - t0

            def loader_for(n_workers: int) -> Any:
                ds = training_dataset(data.cache, idx, size, "default", 3, mean, std)
                return make_loader(ds, batch, True, n_workers, 0, device)

            loader = loader_for(workers)
            n_cold, cold_epoch_s = _epoch(loader, 0)
            cold_s = prepare_s + cold_epoch_s
            cached = [_epoch(loader, e) for e in range(1, 1 + max(1, epochs))]
            n_cached = sum(n for n, _ in cached)
            cached_s = sum(t for _, t in cached)
            t0 = time.perf_counter()
            prepare(folder, "auto", 1.0)  # a later run: hash the files, find the cache
            reopen_s = time.perf_counter() - t0
            result: dict[str, Any] = {
                "cold_ips": sig(n_cold / cold_s), "cached_ips": sig(n_cached / cached_s),
                "images": images, "image_size": image_size, "crop": "x".join(map(str, size)),
                "batch": batch, "workers": workers, "augment": "default",
                "cold_prepare_s": round(prepare_s, 3), "cold_epoch_s": round(cold_epoch_s, 3),
                "cached_epochs": len(cached), "cache_reopen_s": round(reopen_s, 3),
                "threads": torch.get_num_threads(),
            }
            result["cached_vs_cold"] = ratio(result["cached_ips"], result["cold_ips"])
            say(f"data: cold {result['cold_ips']:.3g} img/s, cached "
                f"{result['cached_ips']:.3g} img/s", quiet)
            if worker_lever and (os.cpu_count() or 1) >= 2:
                other = 2 if workers == 0 else 0
                alt = loader_for(other)
                _epoch(alt, 0)  # start the workers
                runs = [_epoch(alt, e) for e in range(1, 1 + max(1, epochs))]
                alt_ips = sig(sum(n for n, _ in runs) / sum(t for _, t in runs))
                result["workers_lever"] = {
                    "workers": other, "cached_ips": alt_ips,
                    "ratio_vs_in_process" if other else "ratio_vs_workers":
                        ratio(alt_ips, result["cached_ips"]),
                    "note": "steady-state epochs (workers already started); during training "
                            "the workers share the same cores with the model"}
                del alt
            del loader
        finally:
            if old_cache is None:
                os.environ.pop("UNETKIT_CACHE", None)
            else:
                os.environ["UNETKIT_CACHE"] = old_cache
    return result


def format_data(result: dict[str, Any]) -> str:
    lines = [f"unetkit bench data — {result['images']} synthetic {result['image_size']}px "
             f"images -> {result['crop']} crops, batch {result['batch']}, "
             f"{result['workers']} worker(s), augment {result['augment']}",
             f"cold (decode + cache + one epoch): {result['cold_ips']:.4g} img/s "
             f"(prepare {result['cold_prepare_s']} s, epoch {result['cold_epoch_s']} s)",
             f"cached (memory-mapped):            {result['cached_ips']:.4g} img/s "
             f"({result['cached_vs_cold']}x cold); reopening the cache "
             f"{result['cache_reopen_s']} s"]
    w = result.get("workers_lever")
    if w:
        lines.append(f"with {w['workers']} worker(s): {w['cached_ips']:.4g} img/s cached")
    return "\n".join(lines)
