"""Stream predicted masks into an `img,rle_mask` CSV (the codec lives in data/rle.py)."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
from pathlib import Path
from types import TracebackType
from typing import IO

import numpy as np

from unetkit.data.rle import HEADER, is_gzip, numpy_order, rle_encode
from unetkit.io_utils import atomic_path


class RleWriter:
    """Stream `img,rle_mask` rows to a .csv (or gzip .csv.gz) file, one mask at a time.

    Rows go to a temp file beside the target, renamed over it only when the `with` block
    ends without an error, so a crash never leaves a half-written submission. No masks are
    kept in memory.
    """

    def __init__(self, path: str | Path, order: str = "row",
                 header: tuple[str, str] = HEADER) -> None:
        self.path = Path(path)
        self.order = order
        numpy_order(order)
        self.header = header
        self.rows = 0
        self._stack: contextlib.ExitStack | None = None
        self._writer = None

    def __enter__(self) -> RleWriter:
        stack = contextlib.ExitStack()
        try:
            tmp = stack.enter_context(atomic_path(self.path))
            text: IO[str]
            if is_gzip(self.path):
                raw = stack.enter_context(open(tmp, "wb"))
                # mtime=0 and the final name in the header: the same rows give the same bytes
                gz = stack.enter_context(gzip.GzipFile(filename=self.path.name, mode="wb",
                                                       fileobj=raw, mtime=0))
                text = stack.enter_context(io.TextIOWrapper(gz, encoding="utf-8", newline=""))
            else:
                text = stack.enter_context(open(tmp, "w", encoding="utf-8", newline=""))
            self._writer = csv.writer(text, lineterminator="\n")
            self._writer.writerow(self.header)
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def write(self, img: str, rle: str) -> None:
        """Append one row with an already-encoded RLE string."""
        if self._writer is None:
            raise RuntimeError("RleWriter.write called outside its `with` block.")
        self._writer.writerow((img, rle))
        self.rows += 1

    def write_mask(self, img: str, mask: np.ndarray) -> None:
        """Encode `mask` in the writer's pixel order and append it."""
        self.write(img, rle_encode(mask, self.order))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        stack, self._stack, self._writer = self._stack, None, None
        if stack is not None:
            # closes the file, then renames the temp file (or deletes it on an error)
            stack.__exit__(exc_type, exc, tb)
