"""A thread-safe least-recently-used cache bounded by bytes (predictions, thumbnails).

Bounded by memory rather than by count: one prediction of a 4000x4000 image weighs as much
as thousands of small ones.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class ByteLRU:
    """Keeps at most `max_bytes` of values; the least recently used go first."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Hashable, value: Any, size: int) -> None:
        """Store `value` (of `size` bytes); one larger than the whole budget is not kept."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            if size > self.max_bytes:
                return
            self._items[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self.bytes -= dropped

    def drop(self, match: Any) -> None:
        """Forget every key for which `match(key)` is true (e.g. one image's entries)."""
        with self._lock:
            for key in [k for k in self._items if match(k)]:
                self.bytes -= self._items.pop(key)[1]
