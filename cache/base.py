"""The one small protocol every cache tier implements (memory LRU, Redis, and the two tiered).

Methods are synchronous on purpose. The memory tier answers in about a microsecond, far less than an
asyncio hop to a thread, so the web layer calls it inline on the event loop. The Redis tier blocks on a
socket for up to its (tens of milliseconds) timeout, so the web layer calls it in ``Runtime.io_pool``;
``cache.singleflight`` does exactly that. One sync implementation avoids keeping an asyncio Redis client
and its own pool beside the sync one (the benchmark and the CLI need sync calls anyway).

Contract shared by every implementation (and checked by one parametrized test suite):
- ``get_many`` returns one entry per key, in order: the bytes, or None for a miss. Never raises for a
  backend failure (a failure is a miss).
- ``put_many`` stores each pair; ``ttl_seconds`` None means the backend's default TTL. Never raises for
  a backend failure (the write is dropped).
- ``delete_prefix`` removes every key starting with ``prefix``; it may be slow (Redis SCAN), so it is
  for DELETE and administration, never for the per-request path.
- ``close`` releases connections; the cache is not used afterwards.
Must not know HTTP, the archive or the key layout (``cache.keys`` owns that).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class Cache(Protocol):
    def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    def put_many(self, items: Sequence[tuple[str, bytes]], ttl_seconds: int | None = None) -> None: ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with ``prefix``; returns how many were removed."""
        ...

    def close(self) -> None: ...
