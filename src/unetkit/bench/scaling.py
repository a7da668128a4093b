"""`unetkit bench scaling`: predict's time and memory from 1k² to 16k² pixels.

Each size runs in a fresh Python process, so one size's heap cannot raise the next one's
high-water mark. There a small U-Net (BN folded, warmed up on the batch shapes the sizes
use) predicts a synthetic grey image by 512-pixel tiles, as `predict --tile 512` does. It
reports the wall time of `Predictor.predict` (the fastest of a few runs for small sizes)
and the resident-set high-water mark (VmHWM, reset after the warm-up) above the process's
resident size before the image was made. Time per megapixel is compared with the smallest
size's: linear scaling is a ratio of 1. The tile grid overlaps more on small images (3x3
tiles of 512 cover 1024²), so time per tile-megapixel, the pixels the model ran, is given
too. The memory beyond the input image and the output mask should stay flat.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from unetkit.bench.measure import cpu_flags, cpu_model, load_average, say, sig
from unetkit.errors import UnetkitError, UsageError

SIZES = (1024, 4096, 8192, 16384)
TILE, OVERLAP, BATCH = 512, 0.25, 4
MODEL = {"name": "unet", "in_channels": 1, "classes": 1, "filters": 8, "depth": 3,
         "norm": "batch"}
LINEAR_GOAL = 0.15  # no size may take over 15% more time per megapixel than the smallest
MIN_SECONDS, MAX_REPEATS = 5.0, 5  # small sizes repeat (the fastest counts): less noise
MB = 2**20


def measure_size(side: int, tile: int = TILE, threads: int | None = None,
                 precision: str = "auto") -> dict[str, Any]:
    """One size, in this process (meant to be a fresh one: see `run_scaling`)."""
    import time

    import numpy as np
    import torch

    from unetkit.bench.measure import PeakMemory, memory_method, release_memory
    from unetkit.infer.predict import Predictor
    from unetkit.infer.tiling import tile_count
    from unetkit.models.artifact import default_meta
    from unetkit.models.registry import build_model, count_parameters

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(**MODEL).eval()
    model.unetkit_meta = default_meta(model)
    predictor = Predictor(model, device="cpu", tile=tile, overlap=OVERLAP, batch_size=BATCH,
                          precision=precision)
    # kernels for both batch shapes the sizes run (4 tiles and the last, single one)
    predictor.predict(np.zeros((2 * tile, 2 * tile), np.uint8))
    release_memory()
    cpu = torch.device("cpu")
    with PeakMemory(cpu) as mem:
        image = np.empty((side, side), np.uint8)
        rng = np.random.default_rng(side)
        for r in range(0, side, 1024):  # noise in bands: no full-size int64 temporary
            image[r:r + 1024] = rng.integers(0, 256, image[r:r + 1024].shape, np.uint8)
        times: list[float] = []
        while len(times) < MAX_REPEATS and sum(times) < MIN_SECONDS:
            mask = None  # one mask alive at a time
            start = time.perf_counter()
            mask = predictor.predict(image)
            times.append(time.perf_counter() - start)
    grid = predictor.geometry.pooling_grid
    return {"side": side, "megapixels": sig(side * side / 1e6),
            "tiles": tile_count(side, side, tile, OVERLAP, align=grid),
            "seconds": sig(min(times)), "repeats": len(times),
            "peak_rss_mb": round(mem.peak_mb, 1),
            "baseline_rss_mb": round(mem.start, 1),
            "peak_minus_baseline_mb": round(mem.extra_mb, 1),
            "image_mb": round(image.nbytes / MB, 1), "mask_mb": round(mask.nbytes / MB, 1),
            "threads": torch.get_num_threads(),
            "precision": predictor.precision, "params": count_parameters(model),
            "memory_method": memory_method(cpu)}


def _run_child(side: int, tile: int, threads: int | None, precision: str, quiet: bool
               ) -> dict[str, Any]:
    """`measure_size` in a new interpreter; its progress passes through to stderr."""
    args = json.dumps({"side": side, "tile": tile, "threads": threads, "precision": precision})
    done = subprocess.run([sys.executable, "-m", "unetkit.bench.scaling", args],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if quiet else None,
                          text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        why = "killed, out of memory?" if done.returncode in (-9, 137) else \
            f"exit code {done.returncode}"
        return {"side": side, "error": f"the {side}x{side} run failed ({why})"}
    return json.loads(lines[-1])


def relative(rows: list[dict[str, Any]], tile: int) -> dict[str, Any]:
    """Add each size's time and memory relative to the smallest size that ran; the goals."""
    ok = [r for r in rows if "error" not in r]
    if not ok:
        return {}
    ref = ok[0]
    for r in ok:
        tile_mp = r["tiles"] * tile * tile / 1e6
        r["s_per_mp"] = sig(r["seconds"] / r["megapixels"])
        r["s_per_tile_mp"] = sig(r["seconds"] / tile_mp)
        r["beyond_image_and_mask_mb"] = round(
            r["peak_minus_baseline_mb"] - r["image_mb"] - r["mask_mb"], 1)
    for r in ok:
        r["time_vs_linear"] = round(r["s_per_mp"] / ref["s_per_mp"], 3)
        r["tile_time_vs_linear"] = round(r["s_per_tile_mp"] / ref["s_per_tile_mp"], 3)
    worst = max(abs(r["time_vs_linear"] - 1) for r in ok)
    beyond = [r["beyond_image_and_mask_mb"] for r in ok]
    slowest = max(r["time_vs_linear"] for r in ok)  # below 1: the larger image costs less
    return {"reference_side": ref["side"], "linear_goal": LINEAR_GOAL,
            "time_max_deviation": round(worst, 3),
            "time_within_goal": slowest <= 1 + LINEAR_GOAL,
            "tile_time_max_deviation": round(max(abs(r["tile_time_vs_linear"] - 1)
                                                 for r in ok), 3),
            "memory_beyond_image_and_mask_mb": {"min": min(beyond), "max": max(beyond)}}


def run_scaling(sizes: tuple[int, ...] | list[int] = SIZES, tile: int = TILE,
                threads: int | None = None, precision: str = "auto", quiet: bool = False
                ) -> dict[str, Any]:
    """The scaling table (`bench speed`'s "predict_scaling"), one fresh process per size."""
    sizes = sorted(set(int(s) for s in sizes))
    if not sizes or sizes[0] < 32:
        raise UsageError(f"--sizes {','.join(map(str, sizes))} must be sides of at least "
                         f"32 pixels.")
    if tile < 32:
        raise UsageError(f"--tile {tile} must be at least 32 pixels.")
    load_start = load_average()
    rows = []
    for side in sizes:
        say(f"scaling: predicting {side}x{side} in a fresh process", quiet)
        rows.append(_run_child(side, tile, threads, precision, quiet))
    goals = relative(rows, tile)
    first = next((r for r in rows if "error" not in r), {})
    return {"sizes": rows, "goals": goals, "settings": {
        "model": {**MODEL, "params": first.get("params")}, "tile": tile, "overlap": OVERLAP,
        "batch_size": BATCH, "threads": first.get("threads"),
        "precision": first.get("precision"), "memory_method": first.get("memory_method"),
        "cpu": cpu_model(), "cpu_flags": cpu_flags(), "load_average_start": load_start,
        "load_average_end": load_average()}}


def format_scaling(result: dict[str, Any]) -> str:
    """The printed table (also part of `bench speed`'s)."""
    s, g = result.get("settings", {}), result.get("goals", {})
    m = s.get("model", {})
    lines = [f"predict scaling — {m.get('name')} ({m.get('filters')} filters, depth "
             f"{m.get('depth')}, {m.get('params')} params), tiles {s.get('tile')} overlap "
             f"{s.get('overlap')} batch {s.get('batch_size')}, {s.get('threads')} thread(s), "
             f"{s.get('precision')}; {s.get('cpu')}",
             f"{'side':>6}{'MP':>8}{'tiles':>7}{'seconds':>9}{'s/MP':>8}{'vs lin':>8}"
             f"{'tile vs':>8}{'peak MB':>9}{'+base MB':>9}{'img+mask':>9}{'beyond':>8}"]
    for r in result.get("sizes", []):
        if "error" in r:
            lines.append(f"{r['side']:>6}  {r['error']}")
            continue
        lines.append(f"{r['side']:>6}{r['megapixels']:>8.4g}{r['tiles']:>7}"
                     f"{r['seconds']:>9.4g}{r['s_per_mp']:>8.3g}{r['time_vs_linear']:>8.3f}"
                     f"{r['tile_time_vs_linear']:>8.3f}{r['peak_rss_mb']:>9.0f}"
                     f"{r['peak_minus_baseline_mb']:>9.0f}"
                     f"{r['image_mb'] + r['mask_mb']:>9.0f}"
                     f"{r['beyond_image_and_mask_mb']:>8.0f}")
    if g:
        beyond = g["memory_beyond_image_and_mask_mb"]
        lines.append(f"time per MP within {100 * g['time_max_deviation']:.1f}% of the "
                     f"{g['reference_side']}² run (goal: at most "
                     f"{100 * g['linear_goal']:.0f}% above it, "
                     f"{'met' if g['time_within_goal'] else 'missed'}); per tile-MP within "
                     f"{100 * g['tile_time_max_deviation']:.1f}%; memory beyond image and "
                     f"mask {beyond['min']:.0f}-{beyond['max']:.0f} MB")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """The child process: measure one size, print its JSON line."""
    try:
        print(json.dumps(measure_size(**json.loads(argv[0]))), flush=True)
    except UnetkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None


if __name__ == "__main__":
    main(sys.argv[1:])
