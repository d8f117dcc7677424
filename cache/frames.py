"""Decoded frames kept in process memory for re-windowing and zooming without decoding again.

An LRU of ``DecodedFrame`` objects bounded by the bytes of their arrays (0 = off), thread-safe (the
CPU pool fills it). Only in memory: a decoded 512x512 16-bit frame is 512 kB, 20-30 times a rendered
JPEG, so sending it to Redis would cost more network and memory than decoding JPEG 2000 again saves
on other processes. Must not know HTTP or the archive.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from cache import metrics


class DecodedFrameCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        if self.max_bytes <= 0:
            return None
        with self._lock:
            value = self._items.get(key)
            if value is None:
                metrics.CACHE_REQUESTS.labels("decoded", "miss").inc()
                return None
            self._items.move_to_end(key)
        metrics.CACHE_REQUESTS.labels("decoded", "hit").inc()
        return value

    def put(self, key: str, value: Any, size: int) -> None:
        if self.max_bytes <= 0 or size > self.max_bytes // 4:
            return  # one frame must never evict a quarter of the cache
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._sizes[key] = size
            self._bytes += size
            while self._bytes > self.max_bytes:
                old, _ = self._items.popitem(last=False)
                self._bytes -= self._sizes.pop(old)
                metrics.CACHE_EVICTIONS.labels("decoded").inc()
            metrics.CACHE_BYTES.labels("decoded").set(self._bytes)

    @property
    def bytes(self) -> int:
        return self._bytes
