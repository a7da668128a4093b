"""Progress bars with rate and ETA for long loops outside the training loop."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], total: int | None = None, desc: str = "",
             disable: bool = False, unit: str = "img") -> Iterator[T]:
    return iter(tqdm(items, total=total, desc=desc, unit=unit, dynamic_ncols=True,
                     disable=disable or total == 0, file=sys.stderr, leave=False))
