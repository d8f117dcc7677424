"""Redis tier: a shared cache for all workers and hosts, optional and never a point of failure.

redis-py (hiredis parser) over a blocking connection pool; MGET for reads, one pipelined batch of
``SET ... PX`` for writes. Sockets time out in tens of milliseconds and redis-py's own retries are off,
so a dead or stalled Redis costs one short timeout, not seconds. A circuit breaker then stops trying
for ``retry_interval`` seconds: calls return misses and drop writes at once. The failure is logged once
(WARNING) and once more when Redis answers again (INFO); every failed or skipped call is counted in
``cache.metrics``. After the interval one caller probes; success closes the circuit. Reconnection is
redis-py's: a broken connection is discarded and the next call opens a new one.

Also provides the lease primitives of ``cache.singleflight`` (SET NX PX, compare-and-delete).
Must not raise on backend failures, log per request, or be called on the event loop (it blocks up to
its timeout: run it in the I/O pool).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from cache import metrics
from cache.errors import CacheConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Compare-and-delete: only the holder of a lease may release it (a slow holder whose lease expired
# must not delete the lease a second computer took since).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_SCAN_BATCH = 1000
_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


class RedisCache:
    """The Redis tier. ``url`` like ``redis://127.0.0.1:6379/0``; ``default_ttl_seconds`` None = no TTL
    (then Redis must run with ``maxmemory`` and an LRU/LFU eviction policy)."""

    def __init__(
        self,
        url: str,
        *,
        default_ttl_seconds: int | None = 86400,
        socket_timeout: float = 0.05,
        connect_timeout: float = 0.05,
        retry_interval: float = 1.0,
        max_connections: int = 64,
    ) -> None:
        if not url:
            raise CacheConfigError(
                "Redis url is empty: pass None instead of a RedisCache to run without Redis"
            )
        try:
            self._pool = redis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                # Waiting for a free pooled connection is bounded like a socket read.
                timeout=socket_timeout,
                socket_timeout=socket_timeout,
                socket_connect_timeout=connect_timeout,
                retry=Retry(NoBackoff(), 0),  # the breaker decides when to retry, not each call
                health_check_interval=0,
            )
        except ValueError as exc:
            raise CacheConfigError(f"Redis url {url!r} is invalid: {exc}") from None
        self._client = redis.Redis(connection_pool=self._pool)
        self._release = self._client.register_script(_RELEASE)
        self.default_ttl_seconds = default_ttl_seconds
        self.retry_interval = retry_interval
        self._lock = threading.Lock()
        self._open_until = 0.0  # 0 = circuit closed
        self._probing = False
        self._where = url.split("@")[-1]  # never log credentials
        metrics.REDIS_UP.set(1)

    # -- circuit breaker ------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """False while the circuit is open (calls are skipped)."""
        return self._open_until == 0.0

    def _allow(self) -> bool:
        if self._open_until == 0.0:  # racy read on purpose: the hot path takes no lock
            return True
        with self._lock:
            if self._open_until == 0.0:
                return True
            if self._probing or time.monotonic() < self._open_until:
                return False
            self._probing = True  # exactly one caller probes; the others keep skipping
            return True

    def _ok(self) -> None:
        if self._open_until == 0.0:
            return
        with self._lock:
            if self._open_until == 0.0:
                return
            self._open_until = 0.0
            self._probing = False
        metrics.REDIS_UP.set(1)
        log.info("Redis at %s answers again; shared cache back on", self._where)

    def _failed(self, op: str, exc: Exception) -> None:
        metrics.REDIS_ERRORS.labels(op).inc()
        with self._lock:
            first = self._open_until == 0.0
            self._open_until = time.monotonic() + self.retry_interval
            self._probing = False
        if first:
            metrics.REDIS_UP.set(0)
            log.warning(
                "Redis at %s failed (%s: %s); serving without the shared cache, retrying every %.1f s",
                self._where,
                type(exc).__name__,
                exc,
                self.retry_interval,
            )

    def _call(self, op: str, fn: Callable[[], T], fallback: T) -> T:
        if not self._allow():
            metrics.REDIS_SKIPPED.labels(op).inc()
            return fallback
        try:
            result = fn()
        except (RedisError, OSError) as exc:
            self._failed(op, exc)
            return fallback
        self._ok()
        return result

    # -- Cache protocol -------------------------------------------------------------------------

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []

        # decode_responses is off, so MGET gives bytes or None (redis-py's annotation also allows str).
        def mget() -> list[bytes | None]:
            return self._client.mget(keys)  # type: ignore[return-value]

        misses: list[bytes | None] = [None] * len(keys)
        values = self._call("get", mget, misses)
        hits = sum(v is not None for v in values)
        if hits:
            metrics.REDIS_HIT.inc(hits)
        if len(values) - hits:
            metrics.REDIS_MISS.inc(len(values) - hits)
        return values

    def get(self, key: str) -> bytes | None:
        return self.get_many((key,))[0]

    def put_many(self, items: Sequence[tuple[str, bytes]], ttl_seconds: int | None = None) -> None:
        if not items:
            return
        ttl = self.default_ttl_seconds if ttl_seconds is None else ttl_seconds

        def write() -> None:
            # transaction=False: no MULTI/EXEC, just one round trip for the whole batch.
            pipe = self._client.pipeline(transaction=False)
            for key, value in items:
                pipe.set(key, value, px=int(ttl * 1000) if ttl else None)
            pipe.execute()

        self._call("put", write, None)

    def delete_prefix(self, prefix: str) -> int:
        def scan_delete() -> int:
            removed = 0
            batch: list[bytes] = []
            for key in self._client.scan_iter(match=prefix.translate(_GLOB_SPECIAL) + "*", count=_SCAN_BATCH):
                batch.append(key)
                if len(batch) >= _SCAN_BATCH:
                    removed += int(self._client.unlink(*batch))
                    batch.clear()
            if batch:
                removed += int(self._client.unlink(*batch))
            return removed

        return self._call("delete", scan_delete, 0)

    def close(self) -> None:
        self._pool.disconnect()

    # -- leases (cross-process single-flight) -----------------------------------------------------

    def acquire_lease(self, key: str, token: str, ttl_ms: int) -> bool | None:
        """True if this caller now holds the lease, False if another does, None if Redis is unavailable."""
        return self._call("lease", lambda: bool(self._client.set(key, token, nx=True, px=ttl_ms)), None)

    def get_or_acquire(
        self, key: str, lease_key: str, token: str, ttl_ms: int
    ) -> tuple[bytes | None, bool | None]:
        """One round trip for a waiter: the value if it is there now, else try to take the lease."""

        def both() -> tuple[bytes | None, bool | None]:
            pipe = self._client.pipeline(transaction=False)
            pipe.get(key)
            pipe.set(lease_key, token, nx=True, px=ttl_ms)
            value, took = pipe.execute()
            if value is not None:
                if took:  # the value arrived in time; give back the lease we took by accident
                    self._release(keys=[lease_key], args=[token])
                return value, False
            return None, bool(took)

        missing: tuple[bytes | None, bool | None] = (None, None)
        return self._call("lease", both, missing)

    def release_lease(self, key: str, token: str) -> None:
        self._call("lease", lambda: self._release(keys=[key], args=[token]), None)

    def ping(self) -> bool:
        return bool(self._call("ping", self._client.ping, False))
