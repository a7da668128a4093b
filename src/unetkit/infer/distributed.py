"""Predict across processes and machines: which rank am I, which inputs are mine, one output.

Ranks come from a launcher (torchrun: RANK/WORLD_SIZE/LOCAL_RANK; SLURM's srun:
SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID) or, with `--devices N` and no launcher, from
`spawn`, which starts N local processes. Input i belongs to rank i % world_size: every rank
expands the same input list, so splitting needs no messages; only the end does. There every
rank reaches a barrier (gloo, with a timeout, so a rank that died or hangs ends the run with a
sentence instead of a hang), the ranks swap their outcomes, the first failure becomes every
rank's error, and rank 0 merges the per-rank part files in input order.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import gc
import hashlib
import heapq
import json
import os
import re
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from unetkit.errors import UnetkitError, UsageError

T = TypeVar("T")
TIMEOUT_ENV = "UNETKIT_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0  # the slowest rank's lead over the fastest must fit in this
MIN_STARTUP_S = 120.0  # processes meet within this (importing torch, loading the model)
# rank, world size, local rank, processes per machine (SLURM: --ntasks-per-node, else
# the first count of SLURM_TASKS_PER_NODE, which reads like "4(x2)")
LAUNCHER_VARS = {"torchrun": ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"),
                 "slurm": ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID",
                           "SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE")}


@dataclass(frozen=True)
class RankInfo:
    """Where this process stands: its rank among `world_size`, and among the processes of
    its machine (`local_rank` of `local_world_size`, which share the machine's cores)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    launcher: str = "none"  # none, torchrun, slurm, or spawn (started by `spawn`)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def label(self) -> str:
        return f"rank {self.rank} of {self.world_size}"


def shard(count: int, rank: int, world_size: int) -> list[int]:
    """The input indices rank `rank` owns: i with i % world_size == rank (disjoint, covering,
    and the same on every machine; a rank past the last input gets none)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of {world_size} process(es).")
    return list(range(rank, count, world_size))


def _int_var(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    text = env.get(name, "")
    if text == "" and default is not None:
        return default
    match = re.match(r"\s*(\d+)", text)  # SLURM writes counts like "2(x3)"
    if not match:
        raise UsageError(f"The environment variable {name}={text!r} is not a count; the "
                         f"launcher should set it to a whole number.")
    return int(match.group(1))


def discover_rank(env: Mapping[str, str] | None = None) -> RankInfo | None:
    """The rank a launcher gave this process (torchrun first, then SLURM), or None when
    no launcher started it. A one-task SLURM job counts as no launcher."""
    env = os.environ if env is None else env
    if env.get("RANK", "") != "" and env.get("WORLD_SIZE", "") != "":
        launcher, names = "torchrun", LAUNCHER_VARS["torchrun"]
    elif env.get("SLURM_PROCID", "") != "" and _int_var(env, "SLURM_NTASKS", 1) > 1:
        launcher, names = "slurm", LAUNCHER_VARS["slurm"]
    else:
        return None
    rank, world = _int_var(env, names[0]), _int_var(env, names[1])
    local = _int_var(env, names[2], rank)
    local_world = world
    for name in reversed(names[3:]):
        local_world = _int_var(env, name, local_world)
    if world < 1 or rank >= world or local >= max(local_world, 1):
        raise UsageError(f"The launcher's {names[0]}={rank}, {names[2]}={local} do not fit "
                         f"{names[1]}={world}, {names[3]}={local_world}.")
    return RankInfo(rank, world, local, max(local_world, 1), launcher)


def resolve_world(devices: int, num_nodes: int, env: Mapping[str, str] | None = None
                  ) -> RankInfo:
    """What `--devices N --num-nodes M` mean here: the launcher's rank when one started this
    process; else one process, or (launcher "spawn") N local processes still to start."""
    if devices < 1:
        raise UsageError(f"--devices {devices} must be at least 1.")
    if num_nodes < 1:
        raise UsageError(f"--num-nodes {num_nodes} must be at least 1.")
    found = discover_rank(env)
    asked = devices * num_nodes
    if found is not None:
        if asked not in (1, found.world_size):
            raise UsageError(f"--devices {devices} --num-nodes {num_nodes} make {asked} "
                             f"processes, but the {found.launcher} launcher started "
                             f"{found.world_size}; give matching counts or leave them out.")
        return found
    if num_nodes > 1:
        raise UsageError(f"--num-nodes {num_nodes} needs a launcher that starts the processes "
                         f"on every node (torchrun --nnodes {num_nodes} --nproc-per-node "
                         f"{devices} ..., or srun); without one, use --devices on this machine.")
    if devices == 1:
        return RankInfo()
    return RankInfo(world_size=devices, local_world_size=devices, launcher="spawn")


def core_share(cores: Sequence[int], local_rank: int, local_world_size: int,
               total: int | None = None) -> list[int]:
    """The cores a process takes: a disjoint slice of `cores` per local rank, unless the
    launcher already bound it (fewer cores than the machine's `total`: keep them)."""
    cores = sorted(cores)
    total = os.cpu_count() if total is None else total
    if len(cores) < (total or len(cores)) or len(cores) < local_world_size:
        return cores
    per = len(cores) // local_world_size
    return cores[local_rank * per:(local_rank + 1) * per]


def pin_threads(info: RankInfo) -> int:
    """Bind this process to its share of the cores and size torch's thread pool to it (so
    N processes on one machine do not oversubscribe it); returns the thread count."""
    import torch

    try:
        cores = core_share(sorted(os.sched_getaffinity(0)), info.local_rank,
                           info.local_world_size)
        os.sched_setaffinity(0, cores)
        count = len(cores)
    except (AttributeError, OSError):  # no affinity control (macOS, Windows)
        count = (os.cpu_count() or 1) // info.local_world_size
    count = max(1, count)
    torch.set_num_threads(count)
    return count


def timeout_s() -> float:
    """How long a barrier waits for the other ranks (UNETKIT_DIST_TIMEOUT seconds)."""
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        value = -1.0
    if value <= 0:
        raise UsageError(f"{TIMEOUT_ENV}={text!r} must be a number of seconds above 0.")
    return value


def _rendezvous(info: RankInfo) -> None:
    """MASTER_ADDR/MASTER_PORT as torch's env:// rendezvous reads them; SLURM sets neither."""
    if info.launcher == "slurm":
        if "MASTER_ADDR" not in os.environ:
            if _int_var(os.environ, "SLURM_NNODES", 1) > 1:
                raise UsageError("Under SLURM on several nodes, set MASTER_ADDR to the first "
                                 "node (export MASTER_ADDR=$(scontrol show hostnames "
                                 "$SLURM_JOB_NODELIST | head -n1)).")
            os.environ["MASTER_ADDR"] = "127.0.0.1"
        job = _int_var(os.environ, "SLURM_JOB_ID", 0)
        os.environ.setdefault("MASTER_PORT", str(20000 + job % 20000))
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise UsageError(f"{info.label()} was started without {' and '.join(missing)}; the "
                         f"launcher (torchrun) sets them, or export them on every node.")


@contextlib.contextmanager
def process_group(info: RankInfo, device_type: str = "cpu") -> Iterator[Any]:
    """Join the other ranks (gloo on CPU, nccl on CUDA) and yield the gloo group the
    barriers and swaps use; left again on exit."""
    import torch.distributed as dist

    _rendezvous(info)
    backend = "nccl" if device_type == "cuda" else "gloo"
    wait = datetime.timedelta(seconds=max(timeout_s(), MIN_STARTUP_S))
    try:
        dist.init_process_group(backend, rank=info.rank, world_size=info.world_size,
                                timeout=wait)
    except (RuntimeError, ValueError) as exc:
        raise UnetkitError(f"{info.label()} could not meet the other ranks at "
                           f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} within "
                           f"{wait.total_seconds():.0f} s ({_first_line(exc)}).") from None
    try:
        yield dist.new_group(backend="gloo") if backend != "gloo" else None
    finally:
        dist.destroy_process_group()
        gc.collect()  # the group's C++ side goes now, not during interpreter shutdown


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def barrier(info: RankInfo, group: Any = None, what: str = "the end of its work") -> None:
    """Wait for every rank; one that does not arrive within `timeout_s` (it died, hangs, or
    is still working) ends the run with a sentence naming it."""
    import torch.distributed as dist

    wait = timeout_s()
    try:
        dist.monitored_barrier(group=group, timeout=datetime.timedelta(seconds=wait),
                               wait_all_ranks=True)
    except RuntimeError as exc:
        found = re.search(r"Ranks? ([\d, ]+) failed to pass", str(exc))
        late = f"rank(s) {found.group(1).strip()}" if found else "rank 0" if info.rank else \
            "another rank"
        raise UnetkitError(f"{late.capitalize()} of {info.world_size} did not reach {what} "
                           f"within {wait:.0f} s ({info.label()} waited; a rank failed, was "
                           f"killed or is slower: see its log, or raise {TIMEOUT_ENV}).") \
            from None


def swap(value: Any, info: RankInfo, group: Any = None) -> list[Any]:
    """Every rank's `value` (picklable), in rank order, on every rank."""
    import torch.distributed as dist

    values: list[Any] = [None] * info.world_size
    dist.all_gather_object(values, value, group=group)
    return values


def check_same(items: Sequence[str], what: str, info: RankInfo, group: Any = None) -> None:
    """Fail on every rank when the ranks do not see the same `items` (e.g. the input list on
    nodes without a shared filesystem): the shards would overlap or leave inputs out."""
    digest = hashlib.sha1("\n".join(items).encode()).hexdigest()
    seen = swap((len(items), digest), info, group)
    odd = [r for r, s in enumerate(seen) if s != seen[0]]
    if odd:
        raise UnetkitError(f"Rank {odd[0]} sees {seen[odd[0]][0]} {what} and rank 0 sees "
                           f"{seen[0][0]} (or other ones): every rank must see the same files "
                           f"(a filesystem all nodes share).")


def outcome(work: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run `work`; its user-caused error becomes {"error", "exit_code"} for the swap."""
    try:
        return {"status": work(*args)}
    except UnetkitError as exc:
        return {"error": str(exc), "exit_code": exc.exit_code}


def finish(mine: dict[str, Any], info: RankInfo, group: Any = None) -> list[dict[str, Any]]:
    """The end barrier and swap: every rank's status, or the first failed rank's error,
    raised on every rank (so all of them exit with the same sentence and code)."""
    barrier(info, group)
    outcomes = swap(mine, info, group)
    for rank, out in enumerate(outcomes):
        if "error" in out:
            kind = UsageError if out["exit_code"] == UsageError.exit_code else UnetkitError
            raise kind(f"Rank {rank} of {info.world_size} failed: {out['error']}")
    return [out["status"] for out in outcomes]


def part_path(target: Path, rank: int) -> Path:
    """Rank `rank`'s share of `target`, a hidden plain CSV beside it."""
    return target.parent / f".{target.name}.part{rank}.csv"


def read_part(path: Path) -> Iterator[dict[str, str]]:
    """The rows of a part CSV, keyed by its header, read lazily (RLE rows can be
    megabytes, past the csv module's default field limit)."""
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            yield from csv.DictReader(fh)
    except OSError as exc:
        raise UnetkitError(f"The part file {path} cannot be read ({exc.strerror}); --out and "
                           f"the output files must be on a filesystem all nodes share.") from None


def merge_in_order(parts: Sequence[tuple[Sequence[int], Iterable[T]]]) -> Iterator[T]:
    """Every part's rows in input order; each part comes with the input index of each of
    its rows, increasing (a rank's own order). A part whose row count differs fails."""
    try:
        for _, row in heapq.merge(*(zip(i, r, strict=True) for i, r in parts),
                                  key=lambda item: item[0]):
            yield row
    except ValueError as exc:  # zip(strict=True): rows and indices differ in number
        raise UnetkitError(f"A part file holds another number of rows than its rank wrote "
                           f"({exc}).") from None


# ---------------------------------------------------------------- local processes

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child(local_rank: int, fn: Callable[..., Any], args: tuple, world: int, port: int,
           folder: str) -> None:
    """One spawned process: the launcher's variables, then `fn(info, *args)`; its result, its
    one-sentence error or its crash goes to FOLDER/rank<N>.json for the parent."""
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank),
                      WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    info = RankInfo(local_rank, world, local_rank, world, "spawn")
    report = Path(folder) / f"rank{local_rank}.json"
    try:
        result = {"value": fn(info, *args)}
    except UnetkitError as exc:
        report.write_text(json.dumps({"error": str(exc), "exit_code": exc.exit_code}))
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug: the parent names it, the traceback is on stderr
        report.write_text(json.dumps({"crash": f"{type(exc).__name__}: {_first_line(exc)}"}))
        raise
    report.write_text(json.dumps(result))


def _report(folder: Path, rank: int) -> dict[str, Any]:
    path = folder / f"rank{rank}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _spawn_failure(rank: int, world: int, report: dict[str, Any], code: int | None
                   ) -> UnetkitError:
    """The error that ends a spawned run: the rank's own sentence when it left one."""
    if "error" in report:
        kind = UsageError if report["exit_code"] == UsageError.exit_code else UnetkitError
        return kind(report["error"])
    how = f"crashed ({report['crash']})" if "crash" in report else \
        f"was killed by signal {-code}" if code is not None and code < 0 else \
        f"ended with exit code {code}"
    return UnetkitError(f"Rank {rank} of {world} {how} before finishing; the other ranks "
                        f"were stopped.")


def spawn(fn: Callable[..., T], args: tuple, nprocs: int) -> list[T]:
    """Run `fn(info, *args)` in `nprocs` new local processes (ranks 0..nprocs-1) and return
    their results (JSON values) in rank order. The first rank to fail stops the others and
    its error is raised here; Ctrl-C stops them all. A rank that reported its result counts
    as done even if its interpreter then dies on the way out (its files are complete)."""
    from multiprocessing.connection import wait

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="unetkit-ranks-") as tmp:
        folder = Path(tmp)
        spawner = mp.get_context("spawn")
        args = (fn, args, nprocs, _free_port(), tmp)
        procs = [spawner.Process(target=_child, args=(r, *args), daemon=False)
                 for r in range(nprocs)]
        try:
            for p in procs:
                p.start()
            pending = {p.sentinel: r for r, p in enumerate(procs)}
            while pending:
                for sentinel in wait(list(pending)):
                    rank = pending.pop(sentinel)
                    procs[rank].join()
                    report = _report(folder, rank)
                    if "value" not in report:
                        raise _spawn_failure(rank, nprocs, report, procs[rank].exitcode)
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
                if p.pid is not None:
                    p.join()
        return [_report(folder, r)["value"] for r in range(nprocs)]
