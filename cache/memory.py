"""Per-process LRU cache bounded in bytes (0 = off), thread-safe, O(1) per key.

Bounded by bytes, not entries, because entries range from a 2 kB thumbnail to a 32 MB decoded frame.
An entry's charge is its value plus its key plus a fixed overhead for the bookkeeping, so a flood of
tiny entries cannot exceed the bound either. One lock guards the ordered dict: every critical section is
a few dict operations, far shorter than a thread switch, so a lock per shard would not pay off at
2-16 threads (see bench/cache_bench.py). Counts hits, misses and evictions (plain ints, plus the
Prometheus counters in ``cache.metrics``). Must not block on I/O or copy values (``bytes`` are shared).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from cache import metrics
from cache.errors import CacheConfigError

# Approximate CPython cost of one entry beyond its payloads: OrderedDict node and slot, the tuple, the
# key str header and the bytes header. An estimate is enough: it only has to keep the bound honest.
ENTRY_OVERHEAD = 200


@dataclass(frozen=True, slots=True)
class MemoryStats:
    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int
    evictions: int


class MemoryCache:
    """Byte-bounded LRU. ``max_item_bytes`` (default an eighth of the bound) keeps one huge value from
    flushing everything else; larger values are not stored. ``default_ttl_seconds`` None = no expiry."""

    def __init__(
        self,
        max_bytes: int,
        *,
        max_item_bytes: int | None = None,
        default_ttl_seconds: int | None = None,
    ) -> None:
        if max_bytes < 0:
            raise CacheConfigError(f"max_bytes must be >= 0 (0 = off), got {max_bytes}")
        self.max_bytes = max_bytes
        self.max_item_bytes = max_bytes // 8 if max_item_bytes is None else max_item_bytes
        self.default_ttl_seconds = default_ttl_seconds
        # key -> (value, charge, expiry on the monotonic clock or 0.0 for none); order = recency.
        self._entries: OrderedDict[str, tuple[bytes, int, float]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        out: list[bytes | None] = []
        if not self.max_bytes:
            return [None] * len(keys)
        now = 0.0
        hits = 0
        with self._lock:
            entries = self._entries
            for key in keys:
                entry = entries.get(key)
                if entry is not None and entry[2]:
                    now = now or time.monotonic()
                    if entry[2] <= now:
                        self._remove(key)
                        entry = None
                if entry is None:
                    out.append(None)
                    continue
                entries.move_to_end(key)
                out.append(entry[0])
                hits += 1
            self.hits += hits
            self.misses += len(keys) - hits
        # Prometheus counters take their own lock: update them outside ours.
        if hits:
            metrics.MEMORY_HIT.inc(hits)
        if len(keys) - hits:
            metrics.MEMORY_MISS.inc(len(keys) - hits)
        return out

    def get(self, key: str) -> bytes | None:
        return self.get_many((key,))[0]

    def put_many(self, items: Sequence[tuple[str, bytes]], ttl_seconds: int | None = None) -> None:
        if not self.max_bytes:
            return
        ttl = self.default_ttl_seconds if ttl_seconds is None else ttl_seconds
        expiry = time.monotonic() + ttl if ttl else 0.0
        evicted = 0
        with self._lock:
            for key, value in items:
                charge = len(value) + len(key) + ENTRY_OVERHEAD
                if key in self._entries:
                    self._remove(key)
                if charge > self.max_item_bytes or charge > self.max_bytes:
                    continue
                self._entries[key] = (bytes(value), charge, expiry)
                self._bytes += charge
                while self._bytes > self.max_bytes:
                    # popitem(last=False) is the least recently used entry: O(1).
                    _old, (_v, old_charge, _e) = self._entries.popitem(last=False)
                    self._bytes -= old_charge
                    evicted += 1
            self.evictions += evicted
            size = self._bytes
        if evicted:
            metrics.MEMORY_EVICTIONS.inc(evicted)
        metrics.MEMORY_BYTES.set(size)

    def _remove(self, key: str) -> None:
        # Caller holds the lock.
        _value, charge, _expiry = self._entries.pop(key)
        self._bytes -= charge

    def delete_prefix(self, prefix: str) -> int:
        # O(n) over the entries: for DELETE and administration only (see cache.base).
        with self._lock:
            doomed = [k for k in self._entries if k.startswith(prefix)]
            for key in doomed:
                self._remove(key)
            size = self._bytes
        metrics.MEMORY_BYTES.set(size)
        return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
        metrics.MEMORY_BYTES.set(0)

    def stats(self) -> MemoryStats:
        with self._lock:
            return MemoryStats(
                len(self._entries), self._bytes, self.max_bytes, self.hits, self.misses, self.evictions
            )

    def keys_lru_first(self) -> list[str]:
        """Keys from least to most recently used (for tests and debugging)."""
        with self._lock:
            return list(self._entries)

    def close(self) -> None:
        self.clear()
