"""The cache the web layer holds: the in-process LRU in front of the optional shared Redis tier.

Reads try memory, then Redis for the keys memory missed, and copy Redis hits into memory so the next
read of a hot key stays in-process. Writes go to both. ``peek_many`` touches memory only and never
blocks, so the event loop can call it inline; ``get_many``/``put_many`` may wait on Redis and belong in
the I/O pool. Must not raise on a Redis failure (``RedisCache`` turns failures into misses).
"""

from __future__ import annotations

from collections.abc import Sequence

from cache.memory import MemoryCache
from cache.redis_cache import RedisCache


class TieredCache:
    def __init__(
        self, memory: MemoryCache, redis: RedisCache | None = None, *, fill_ttl_seconds: int | None = None
    ) -> None:
        """``fill_ttl_seconds``: memory TTL of entries copied up from Redis (None = the memory default)."""
        self.memory = memory
        self.redis = redis
        self.fill_ttl_seconds = fill_ttl_seconds

    @classmethod
    def build(
        cls,
        *,
        memory_bytes: int,
        redis_url: str = "",
        ttl_seconds: int | None = 86400,
        socket_timeout: float = 0.05,
        retry_interval: float = 1.0,
    ) -> TieredCache:
        """From settings values: ``memory_bytes`` 0 = no memory tier, ``redis_url`` "" = no Redis."""
        memory = MemoryCache(memory_bytes, default_ttl_seconds=ttl_seconds)
        shared = (
            RedisCache(
                redis_url,
                default_ttl_seconds=ttl_seconds,
                socket_timeout=socket_timeout,
                connect_timeout=socket_timeout,
                retry_interval=retry_interval,
            )
            if redis_url
            else None
        )
        return cls(memory, shared, fill_ttl_seconds=ttl_seconds)

    def peek_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Memory only: never blocks, safe on the event loop."""
        return self.memory.get_many(keys)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        values = self.memory.get_many(keys)
        if self.redis is None:
            return values
        missing = [i for i, v in enumerate(values) if v is None]
        if not missing:
            return values
        found = self.redis.get_many([keys[i] for i in missing])
        fill: list[tuple[str, bytes]] = []
        for i, value in zip(missing, found):
            if value is not None:
                values[i] = value
                fill.append((keys[i], value))
        if fill:
            self.memory.put_many(fill, self.fill_ttl_seconds)
        return values

    def get(self, key: str) -> bytes | None:
        return self.get_many((key,))[0]

    def put_many(self, items: Sequence[tuple[str, bytes]], ttl_seconds: int | None = None) -> None:
        self.memory.put_many(items, ttl_seconds)
        if self.redis is not None:
            self.redis.put_many(items, ttl_seconds)

    def delete_prefix(self, prefix: str) -> int:
        removed = self.memory.delete_prefix(prefix)
        if self.redis is not None:
            removed = max(removed, self.redis.delete_prefix(prefix))  # the same keys usually sit in both
        return removed

    def close(self) -> None:
        self.memory.close()
        if self.redis is not None:
            self.redis.close()
