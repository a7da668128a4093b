"""`unetkit bench [speed|data|quality|race|serve]`: the command group, mounted by unetkit.cli.

Kept here so cli.py only mounts it; heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from unetkit.bench.race import race_command
from unetkit.cli_support import guarded
from unetkit.errors import UsageError

JsonOpt = Annotated[bool, typer.Option("--json", help="Print only the JSON (the table and "
                                       "progress go to stderr).")]
QuickOpt = Annotated[bool, typer.Option(help="Few iterations, short checks, no "
                                        "torch.compile: a smoke run in about a minute.")]
BatchOpt = Annotated[int, typer.Option(help="Images per batch.")]
SizeOpt = Annotated[str, typer.Option(help="Input size: N or HxW.")]
ThreadsOpt = Annotated[int | None, typer.Option(help="Torch threads; default: measure 1 and "
                                                "2 threads and use the faster.")]
LeversOpt = Annotated[bool, typer.Option(help="Also time and check the speed levers (BN "
                                         "folding, onnxruntime, int8, torch.compile...).")]
CompileOpt = Annotated[bool | None, typer.Option(help="Include the torch.compile lever "
                                                 "(default: on, off with --quick).")]
RoundsOpt = Annotated[int | None, typer.Option(help="Interleaved rounds (default 3; 1 with "
                                               "--quick).")]
PrecisionOpt = Annotated[str, typer.Option(help="unetkit's training and inference precision: "
                                           "auto (bf16-mixed where native, else 32), 32, "
                                           "bf16-mixed or 16-mixed (CUDA).")]
OutOpt = Annotated[Path, typer.Option(help="Folder for bench_speed.json, bench_data.json, "
                                      "bench_quality.json/.png.")]


def _size(text: str) -> list[int]:
    from unetkit.config import parse_size

    size = parse_size(text)
    assert size is not None
    return size


def _emit(result: dict[str, Any], as_json: bool, table: Callable[[dict[str, Any]], str],
          out: Path | None, name: str) -> None:
    text = json.dumps(result, indent=1)
    if out is not None:
        from unetkit.io_utils import atomic_write_text

        atomic_write_text(out / name, text + "\n")
    if as_json:
        print(table(result), file=sys.stderr)
        print(text)
    else:
        print(table(result))
        if out is not None:
            print(f"JSON: {out / name}", file=sys.stderr)


def _speed(as_json: bool, quick: bool, batch: int, size: str, threads: int | None,
           levers: bool, compile: bool | None, rounds: int | None, out: Path,
           precision: str = "auto") -> None:
    from unetkit.bench.speed import SpeedOptions, run_speed
    from unetkit.bench.speed_table import format_table

    if batch < 1:
        raise UsageError(f"--batch {batch} must be at least 1.")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads {threads} must be at least 1.")
    from unetkit.device import check_precision

    opts = SpeedOptions(batch=batch, size=_size(size), threads=threads, quick=quick,
                        levers=levers, compile=compile, rounds=rounds,
                        precision=check_precision(precision))
    _emit(run_speed(opts), as_json, format_table, out, "bench_speed.json")


bench = typer.Typer(invoke_without_command=True, no_args_is_help=False,
                    context_settings={"help_option_names": ["-h", "--help"]})


@bench.callback()
@guarded
def default(ctx: typer.Context, as_json: JsonOpt = False, quick: QuickOpt = False,
            batch: BatchOpt = 8, size: SizeOpt = "128", threads: ThreadsOpt = None,
            levers: LeversOpt = True, compile: CompileOpt = None,
            rounds: RoundsOpt = None, out: OutOpt = Path("runs/bench"),
            precision: PrecisionOpt = "auto") -> None:
    """Speed, data and quality benchmarks against plain PyTorch and smp.

    With no subcommand this is `bench speed` (same options).

    Example: unetkit bench speed --json
    """
    if ctx.invoked_subcommand is None:
        _speed(as_json, quick, batch, size, threads, levers, compile, rounds, out,
               precision)

@bench.command()
@guarded
def speed(as_json: JsonOpt = False, quick: QuickOpt = False, batch: BatchOpt = 8,
          size: SizeOpt = "128", threads: ThreadsOpt = None, levers: LeversOpt = True,
          compile: CompileOpt = None, rounds: RoundsOpt = None,
          out: OutOpt = Path("runs/bench"), precision: PrecisionOpt = "auto") -> None:
    """Train/infer images/s and peak memory of unetkit beside plain PyTorch and smp.

    Interleaved in one run on the same inputs; ratio = unetkit / reference (> 1: unetkit
    is faster). Also the data pipeline and, with --levers (default), BN folding,
    onnxruntime, OpenVINO, int8, torch.compile, threads and loader workers, each checked for
    accuracy. A full run takes 10-20 minutes on a 2-core CPU.

    Example: unetkit bench speed --json
    """
    _speed(as_json, quick, batch, size, threads, levers, compile, rounds, out, precision)

@bench.command()
@guarded
def precision(model: Annotated[Path, typer.Argument(help="Run or model artifact "
                                                    "directory.")],
              inputs: Annotated[list[str], typer.Argument(help="Images, folders or "
                                                          "globs.")],
              limit: Annotated[int, typer.Option(help="At most this many images.")] = 20,
              as_json: JsonOpt = False, out: OutOpt = Path("runs/bench")) -> None:
    """Mask agreement and speed of bf16-mixed against float32 for a trained model.

    Example: unetkit bench precision runs/membrane data/membrane/images
    """
    from unetkit.bench.precision import format_precision, run_precision

    _emit(run_precision(model, inputs, limit, quiet=as_json), as_json, format_precision,
          out, "bench_precision.json")

@bench.command()
@guarded
def data(as_json: JsonOpt = False,
         images: Annotated[int, typer.Option(help="Synthetic images to write.")] = 64,
         image_size: Annotated[int, typer.Option(help="Their side in pixels.")] = 256,
         size: SizeOpt = "128", batch: BatchOpt = 8,
         workers: Annotated[int | None, typer.Option(help="DataLoader workers (default: "
                                                     "as fit picks them).")] = None,
         out: OutOpt = Path("runs/bench")) -> None:
    """Data pipeline images/s (decode + augment + collate): cold, then from the cache.

    Example: unetkit bench data --images 64 --image-size 256 --json
    """
    from unetkit.bench.data import format_data, run_data

    if images < 1 or image_size < 8:
        raise UsageError("--images must be at least 1 and --image-size at least 8.")
    result = run_data(images=images, image_size=image_size, size=_size(size),
                      batch=batch, workers=workers, quiet=False, worker_lever=True)
    _emit(result, as_json, format_data, out, "bench_data.json")

@bench.command()
@guarded
def quality(budget: Annotated[str, typer.Option(help="Training wall-time budget, e.g. "
                                                "5m.")] = "5m",
            data: Annotated[str | None, typer.Option(help="Data folder (default: "
                                                     "../shared/data/membrane).")] = None,
            as_json: JsonOpt = False, out: OutOpt = Path("runs/bench"),
            auto: Annotated[bool, typer.Option(help="Train with `fit --auto --budget` "
                                               "(planning included) instead of the "
                                               "defaults.")] = False,
            compare: Annotated[bool, typer.Option(help="Train the defaults and --auto "
                                                  "side by side (half the cores each, "
                                                  "same validation images) and compare "
                                                  "them.")] = False,
            format_option: Annotated[list[str] | None, typer.Option(
                help="Layout option KEY=VALUE for the data, repeatable.")] = None) -> None:
    """Validation Dice against wall time for the default `fit` within a budget.

    Writes bench_quality.png, bench_quality.json and the run's metrics.csv to --out;
    with --compare, bench_compare.json and both run directories.

    Example: unetkit bench quality --budget 5m --data data/membrane --json

    Auto against defaults: unetkit bench quality --compare --budget 5m --data data/membrane
    """
    extra = [a for o in (format_option or []) for a in ("--format-option", o)]
    if compare:
        from unetkit.bench.compare import format_compare, run_compare
        from unetkit.bench.quality import default_data

        found = default_data()
        data = data or (str(found) if found else None)
        if data is None:
            raise UsageError("--compare needs --data PATH (../shared/data/membrane is not "
                             "on this machine).")
        result = run_compare(data, budget, out / "compare", extra=extra)
        _emit(result, as_json, format_compare, out, "bench_compare.json")
        return
    from unetkit.bench.quality import format_quality, run_quality
    from unetkit.fit_flags import parse_options

    options = parse_options(format_option or [], "--format-option")
    result = run_quality(budget=budget, data=data, out=out, quiet=as_json, auto=auto,
                         format_options=options)
    _emit(result, as_json, format_quality, out, "bench_quality.json")


@bench.command()
@guarded
def scaling(sizes: Annotated[str, typer.Option(help="Image sides to predict, comma-separated "
                                               "(one fresh process each).")
                             ] = "1024,4096,8192,16384",
            tile: Annotated[int, typer.Option(help="Tile side, as predict --tile.")] = 512,
            threads: Annotated[int | None, typer.Option(help="Torch threads (default: "
                                                        "torch's).")] = None,
            precision: PrecisionOpt = "auto", as_json: JsonOpt = False,
            out: OutOpt = Path("runs/bench")) -> None:
    """Predict's seconds per megapixel and peak memory from 1k² to 16k² pixels (tiled, a
    small U-Net, a synthetic image); writes bench_scaling.json. Also part of `bench speed`.

    Example: unetkit bench scaling --sizes 1024,4096 --json
    """
    from unetkit.bench.scaling import format_scaling, run_scaling
    from unetkit.device import check_precision

    try:
        sides = [int(s) for s in sizes.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--sizes {sizes!r} must be whole numbers, e.g. 1024,4096.") from None
    _emit(run_scaling(sides, tile, threads, check_precision(precision), quiet=as_json),
          as_json, format_scaling, out, "bench_scaling.json")


@bench.command("serve")
@guarded
def serve_bench(as_json: JsonOpt = False,
                requests: Annotated[int, typer.Option(help="Predictions to send.")] = 200,
                clients: Annotated[int, typer.Option(help="Concurrent clients.")] = 8,
                size: Annotated[int, typer.Option(help="Side of the uploaded images.")] = 64,
                out: OutOpt = Path("runs/bench")) -> None:
    """The studio's HTTP API under load: errors, p50/p95 latency and requests/s.

    A real server on loopback (a tiny model, synthetic images); writes bench_serve.json.

    Example: unetkit bench serve --requests 200 --clients 8 --json
    """
    from unetkit.bench.serve import format_serve, run_serve

    _emit(run_serve(requests, clients, size, quiet=as_json), as_json, format_serve, out,
          "bench_serve.json")


bench.command("race")(guarded(race_command))  # bench/race.py: unetkit beside its peers


def make_bench_app() -> typer.Typer:
    """The `unetkit bench` command group, for cli.py to mount."""
    return bench
