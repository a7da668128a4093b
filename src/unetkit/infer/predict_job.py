"""`unetkit predict` as a job: its flags checked, then run by one process or by many.

One process predicts every input. Several (`--devices N`, torchrun, srun) each predict their
shard (infer/distributed.py): the rank that owns an image writes its mask, overlay and maps;
its rows of the RLE file and of uncertainty.csv go to part files, which rank 0 merges in
input order after the end barrier and then removes, so every file holds the same bytes as
one process writes.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from unetkit.errors import UnetkitError, UsageError
from unetkit.infer import distributed as dist
from unetkit.infer.batch import BatchResult, expand_inputs, make_postprocess, predict_files
from unetkit.infer.engines import check_choice

PROBABILITY_FORMATS = (None, "npy", "tiff")


@dataclass
class PredictJob:
    """Everything `unetkit predict` was asked, as it travels to each rank."""

    model: Path
    out: Path
    tile: int | None = None
    overlap: float = 0.25
    batch_size: int = 4
    tta: bool = False
    overlay: bool = False
    probabilities: str | None = None
    palette: bool = False
    threshold: float = 0.5
    rle: Path | None = None
    rle_order: str = "row"
    keep_largest: bool = False
    min_size: int = 0
    instances: bool = False
    split_touching: bool = True
    engine: str = "auto"
    precision: str = "auto"
    uncertainty: bool = False
    devices: int = 1
    num_nodes: int = 1
    max_pixels: int | None = None  # None: PIL's decompression-bomb limit

    def check(self) -> None:
        """The flag errors, before any model is loaded or process started."""
        if self.probabilities not in PROBABILITY_FORMATS:
            raise UsageError(f"--probabilities {self.probabilities!r} is unknown; use npy or "
                             f"tiff.")
        if not 0 < self.overlap < 1:
            raise UsageError(f"--overlap {self.overlap} must be between 0 and 1.")
        if self.rle_order not in ("row", "column"):
            raise UsageError(f"--rle-order {self.rle_order!r} is unknown; use row or column.")
        if self.rle is not None and not self.rle.name.lower().endswith((".csv", ".csv.gz")):
            raise UsageError(f"--rle {self.rle} must name a .csv or .csv.gz file.")
        check_choice(self.engine, self.precision)  # --engine auto|torch|onnx|openvino
        if self.batch_size < 1:
            raise UsageError(f"--batch-size {self.batch_size} must be at least 1.")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise UsageError(f"--max-pixels {self.max_pixels} must be at least 1.")


@dataclass
class PredictSummary:
    """What all ranks together wrote; `message` is the closing line."""

    out: str
    rle: str | None
    written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def message(self) -> str:
        return (f"Wrote {self.written} mask(s) to {self.out}"
                + (f" and {self.written} row(s) to {self.rle}" if self.rle is not None else "")
                + (f"; skipped {len(self.skipped)} bad file(s)" if self.skipped else "") + ".")


def run_predict(job: PredictJob, inputs: list[str]) -> PredictSummary:
    """Check the flags, expand the inputs, and predict them in this process, in the ranks a
    launcher started, or in `--devices` new local processes."""
    job.check()
    paths = [str(p) for p in expand_inputs(inputs)]
    world = dist.resolve_world(job.devices, job.num_nodes)
    if world.launcher == "spawn":
        return PredictSummary(**dist.spawn(predict_rank, (job, paths), world.world_size)[0])
    if world.distributed:
        return PredictSummary(**predict_rank(world, job, paths))
    result = predict_some(job, [Path(p) for p in paths], rle=job.rle)
    return PredictSummary(str(job.out), _text(job.rle), len(result.written), result.skipped)


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def predict_some(job: PredictJob, paths: list[Path], device: str | None = None,
                 rle: Path | None = None, uncertainty_csv: Path | None = None,
                 quiet: bool = False) -> BatchResult:
    """Predict `paths` into job.out, RLE rows into `rle` and the uncertainty rows into
    `uncertainty_csv` (default OUT/uncertainty.csv): one process's whole share."""
    from unetkit.infer.engine_auto import engine_for_predict
    from unetkit.infer.predict import Predictor
    from unetkit.infer.rle import RleWriter
    from unetkit.infer.uncertainty_files import UncertaintyWriter

    if job.max_pixels is not None:  # the readers refuse files above PIL's limit
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, job.max_pixels)
    net, precision = engine_for_predict(job.model, job.engine, job.precision)
    predictor = Predictor(net, device=device, tile=job.tile, overlap=job.overlap, tta=job.tta,
                          precision=precision, batch_size=job.batch_size)
    clean = make_postprocess(len(predictor.class_names), job.keep_largest, job.min_size)
    maps = UncertaintyWriter(job.out, uncertainty_csv) if job.uncertainty else None
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(RleWriter(rle, job.rle_order)) if rle is not None \
            else None
        result = predict_files(predictor, paths, job.out, job.threshold, job.overlay,
                               job.probabilities, job.palette, postprocess=clean,
                               rle_writer=writer, quiet=quiet, instances=job.instances,
                               split_touching=job.split_touching, uncertainty_writer=maps)
    if maps is not None:
        maps.close()
    return result


def _parts(job: PredictJob, rank: int) -> tuple[Path | None, Path | None]:
    """This rank's part files: its RLE rows and its uncertainty.csv rows."""
    from unetkit.infer.uncertainty_files import CSV_NAME

    return (dist.part_path(job.rle, rank) if job.rle is not None else None,
            dist.part_path(job.out / CSV_NAME, rank) if job.uncertainty else None)


def _device(info: dist.RankInfo, engine: str) -> str | None:
    """One GPU per local rank on CUDA (torch engine); None: the CPU."""
    import torch

    if engine in ("onnx", "openvino") or not torch.cuda.is_available():
        return None
    count = torch.cuda.device_count()
    if info.local_rank >= count:
        raise UsageError(f"{info.local_world_size} processes per machine need as many GPUs, "
                         f"but this machine has {count}; use --devices {count}.")
    torch.cuda.set_device(info.local_rank)
    return f"cuda:{info.local_rank}"


def _predict_shard(info: dist.RankInfo, job: PredictJob, paths: list[str]) -> dict[str, Any]:
    device = _device(info, job.engine)
    rle, csv_part = _parts(job, info.rank)
    mine = [Path(paths[i]) for i in dist.shard(len(paths), info.rank, info.world_size)]
    result = predict_some(job, mine, device, rle, csv_part, quiet=info.rank != 0)
    return {"written": len(result.written), "skipped": result.skipped}


def predict_rank(info: dist.RankInfo, job: PredictJob, paths: list[str]) -> dict[str, Any]:
    """One rank's run: its shard, the end barrier, on rank 0 the merge, and a last barrier
    that tells every rank how the merge went (so all exit together, with one outcome).
    Returns the summary of all ranks (as a dict, for the process that spawned it)."""
    dist.pin_threads(info)
    with dist.process_group(info, "cpu" if _device(info, job.engine) is None else "cuda") \
            as group:
        dist.check_same(paths, "input files", info, group)
        job = _same_engine(job, info, group)
        mine = dist.outcome(_predict_shard, info, job, paths)
        try:
            statuses = dist.finish(mine, info, group)
        except BaseException:  # every rank cleans up: the first to exit stops the others
            _remove_parts(job, info.world_size)
            raise
        merged: dict[str, Any] = {"status": None}
        if info.rank == 0:
            try:
                merged = dist.outcome(merge_parts, job, paths,
                                      [s["skipped"] for s in statuses], info.world_size)
            finally:
                _remove_parts(job, info.world_size)
        dist.finish(merged, info, group)
    summary = PredictSummary(str(job.out), _text(job.rle),
                             sum(s["written"] for s in statuses),
                             [tuple(x) for s in statuses for x in s["skipped"]])
    return asdict(summary)


def _same_engine(job: PredictJob, info: dist.RankInfo, group: Any) -> PredictJob:
    """`--engine auto` resolved once, on rank 0, for all ranks: measured choices could
    differ between processes, and then so would their masks."""
    if job.engine != "auto":
        return job
    from dataclasses import replace

    from unetkit.infer.engine_auto import resolve_engine

    mine = dist.outcome(lambda: resolve_engine(job.model, job.engine, job.precision)) \
        if info.rank == 0 else None
    chosen = dist.swap(mine, info, group)[0]
    if "error" in chosen:
        raise (UsageError if chosen["exit_code"] == UsageError.exit_code else UnetkitError)(
            chosen["error"])
    engine, precision = chosen["status"]
    return replace(job, engine=engine, precision=precision)


def _remove_parts(job: PredictJob, world: int) -> None:
    for r in range(world):
        for p in _parts(job, r):
            if p is not None:
                with contextlib.suppress(OSError):
                    p.unlink(missing_ok=True)


def merge_parts(job: PredictJob, paths: list[str], skipped: list[list[Any]], world: int
                ) -> None:
    """Rank 0, after the barrier: every rank's part files into the RLE file and
    uncertainty.csv, in input order (a rank's rows are its shard minus its skipped files)."""
    from unetkit.infer.evaluate import write_per_image
    from unetkit.infer.rle import RleWriter
    from unetkit.infer.uncertainty_files import CSV_NAME

    done = []
    for r in range(world):
        bad = {str(s[0]) for s in skipped[r]}
        done.append([i for i in dist.shard(len(paths), r, world) if paths[i] not in bad])
    if job.rle is not None:
        parts = [(d, dist.read_part(dist.part_path(job.rle, r))) for r, d in enumerate(done)]
        with RleWriter(job.rle, job.rle_order) as writer:
            for row in dist.merge_in_order(parts):
                writer.write(*row.values())
    if job.uncertainty:  # a rank without images writes no part
        target = job.out / CSV_NAME
        parts = [(d, dist.read_part(dist.part_path(target, r))) for r, d in enumerate(done) if d]
        write_per_image(list(dist.merge_in_order(parts)), target)
