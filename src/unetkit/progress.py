"""Progress with rate and ETA for long loops outside the training loop.

On a terminal: a tqdm bar. Anywhere else (SLURM and CI logs, nohup, a pipe): one plain line
about every 10% of the work, so a log holds a few lines instead of thousands of redraws.
`UNETKIT_PROGRESS=bar|plain` overrides the choice.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
PLAIN_STEPS = 10  # plain lines per loop


def say(msg: str, quiet: bool = False) -> None:
    """A status line on stderr, from the first process only (not once per DDP rank)."""
    if not quiet and first_process():
        print(msg, file=sys.stderr, flush=True)


def first_process() -> bool:
    """False in the processes a distributed launcher (Lightning DDP, torchrun, SLURM) started
    besides the first."""
    return all(os.environ.get(k, "0") in ("", "0")
               for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def plain_output() -> bool:
    """True when progress should be plain lines rather than a redrawn bar."""
    forced = os.environ.get("UNETKIT_PROGRESS", "").strip().lower()
    if forced in ("bar", "plain"):
        return forced == "plain"
    return not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())


def duration(seconds: float) -> str:
    """0.4 s, 12 s, 3 min 05 s, 1 h 02 min: short and unambiguous in a log line."""
    if seconds < 9.95:
        return f"{max(seconds, 0.0):.1f} s"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def plain_line(desc: str, done: int, total: int, elapsed: float, unit: str) -> str:
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else 0.0
    return (f"{desc}: {done}/{total} {unit} ({100 * done // max(total, 1)}%), "
            f"{rate:.3g} {unit}/s, elapsed {duration(elapsed)}, ETA {duration(eta)}")


def _plain(items: Iterable[T], total: int, desc: str, unit: str) -> Iterator[T]:
    start = time.monotonic()
    mark = 1
    for done, item in enumerate(items, 1):
        yield item
        if done * PLAIN_STEPS >= mark * total:
            print(plain_line(desc, done, total, time.monotonic() - start, unit),
                  file=sys.stderr, flush=True)
            mark = done * PLAIN_STEPS // total + 1


def progress(items: Iterable[T], total: int | None = None, desc: str = "",
             disable: bool = False, unit: str = "img") -> Iterator[T]:
    """`items` with progress on stderr; silent in the ranks of a distributed run but the
    first (each would draw its own bar over the others)."""
    if disable or total == 0 or not first_process():
        return iter(items)
    if plain_output() and total:
        return _plain(items, total, desc, unit)
    from tqdm.auto import tqdm

    return iter(tqdm(items, total=total, desc=desc, unit=unit, dynamic_ncols=True,
                     file=sys.stderr, leave=False, disable=plain_output()))
