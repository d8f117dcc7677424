"""Single-flight: concurrent requests for the same missing key compute it once.

Within a process, the first caller starts one asyncio task per key and later callers await the same
task (counted as ``process`` waits). The task is shielded, so a caller that disconnects does not cancel
the work the others wait for; an exception reaches every waiter and is not cached.

Across processes and hosts, the task first takes a Redis lease (``SET lease NX PX``). When another
process holds it, the task polls Redis with a short backoff (counted as ``cluster`` waits) until the
value appears, the lease frees up (the holder failed: take it and compute) or the lease time runs out;
when Redis is down or the breaker is open it computes at once. Duplicate work is the worst outcome of a
lost lease, never a wrong answer, because keys are derived from content (``cache.keys``).

After computing, the value goes into the memory tier at once (inline, microseconds) and into Redis in
the background followed by the lease release, so the response does not wait for the shared write.
Must not run Redis calls on the event loop (they go through ``io``, normally ``Runtime.io``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from cache import keys, metrics
from cache.tiered import TieredCache

log = logging.getLogger(__name__)

Compute = Callable[[], Awaitable[bytes]]
#: Runs a blocking callable off the event loop: ``await io(fn, *args)``. ``Runtime.io`` and
#: ``asyncio.to_thread`` both fit.
IoRunner = Callable[..., Awaitable[Any]]


class SingleFlight:
    def __init__(
        self,
        cache: TieredCache,
        *,
        io: IoRunner | None = None,
        lease_ms: int = 2000,
        ttl_seconds: int | None = None,
        poll_min: float = 0.005,
        poll_max: float = 0.05,
    ) -> None:
        """``lease_ms`` bounds how long other processes wait for a crashed or stuck holder; set it above
        the slowest normal computation (queueing included). ``ttl_seconds`` None = the tiers' default."""
        self.cache = cache
        self._io: IoRunner = io or asyncio.to_thread
        self.lease_ms = lease_ms
        self.ttl_seconds = ttl_seconds
        self.poll_min = poll_min
        self.poll_max = poll_max
        self._flights: dict[str, asyncio.Task[bytes]] = {}
        self._background: set[asyncio.Future[Any]] = set()
        # Plain counters beside the Prometheus ones, for tests and /debug pages.
        self.computes = 0
        self.process_waits = 0
        self.cluster_waits = 0

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    async def get_or_compute(self, key: str, compute: Compute, *, ttl_seconds: int | None = None) -> bytes:
        """The cached value of ``key``, or ``await compute()`` run once for all concurrent callers.

        Raises whatever ``compute`` raises (to every caller waiting on that computation).
        """
        hit = self.cache.peek_many((key,))[0]
        if hit is not None:
            return hit
        flight = self._flights.get(key)
        if flight is None:
            ttl = self.ttl_seconds if ttl_seconds is None else ttl_seconds
            flight = asyncio.get_running_loop().create_task(self._fill(key, compute, ttl))
            self._flights[key] = flight
            flight.add_done_callback(lambda task: self._landed(key, task))
        else:
            self.process_waits += 1
            metrics.WAITS_PROCESS.inc()
        return await asyncio.shield(flight)

    def _landed(self, key: str, task: asyncio.Task[bytes]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # marks it retrieved: every caller may have gone away meanwhile

    async def _fill(self, key: str, compute: Compute, ttl: int | None) -> bytes:
        redis = self.cache.redis
        if redis is not None:
            # Memory was peeked on the event loop already; only Redis needs the I/O pool.
            value = (await self._io(redis.get_many, [key]))[0]
            if value is not None:
                self.cache.memory.put_many([(key, value)], ttl)
                return value
        lease_key = keys.lease(key)
        held = False
        token = ""
        if redis is not None:
            # A token only where a lease is taken: os.urandom is a system call on the event loop.
            token = os.urandom(8).hex()
            took = await self._io(redis.acquire_lease, lease_key, token, self.lease_ms)
            if took is False:
                self.cluster_waits += 1
                metrics.WAITS_CLUSTER.inc()
                value, took = await self._wait_for_holder(key, lease_key, token)
                if value is not None:
                    self.cache.memory.put_many([(key, value)], ttl)
                    return value
            held = bool(took)  # None: Redis unavailable or the wait ran out; compute without a lease
        self.computes += 1
        metrics.SINGLEFLIGHT_COMPUTES.inc()
        try:
            value = await compute()
        except BaseException:
            if held and redis is not None:
                self._spawn(redis.release_lease, lease_key, token)  # let waiters elsewhere take over now
            raise
        self.cache.memory.put_many([(key, value)], ttl)
        if redis is not None:
            self._spawn(self._publish, key, value, ttl, lease_key, token if held else None)
        return value

    async def _wait_for_holder(
        self, key: str, lease_key: str, token: str
    ) -> tuple[bytes | None, bool | None]:
        """Poll until the value appears (value, False), we take the lease (None, True) or give up (None, None)."""
        assert self.cache.redis is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lease_ms / 1000 + self.poll_max
        delay = self.poll_min
        while loop.time() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.poll_max)
            value, took = await self._io(
                self.cache.redis.get_or_acquire, key, lease_key, token, self.lease_ms
            )
            if value is not None:
                return value, False
            if took is None or took:
                return None, took
        return None, None

    def _publish(self, key: str, value: bytes, ttl: int | None, lease_key: str, token: str | None) -> None:
        # Blocking, in the I/O pool: the value must be in Redis before the lease goes, so that a waiter
        # that finds the lease free also finds the value (or computes, if the write was dropped).
        redis = self.cache.redis
        assert redis is not None
        redis.put_many([(key, value)], ttl)
        if token is not None:
            redis.release_lease(lease_key, token)

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        future = asyncio.ensure_future(self._io(fn, *args))
        self._background.add(future)
        future.add_done_callback(self._background_done)

    def _background_done(self, future: asyncio.Future[Any]) -> None:
        self._background.discard(future)
        if not future.cancelled() and future.exception() is not None:
            # Only a shut-down pool gets here (RedisCache never raises for Redis failures).
            log.debug("background cache write failed", exc_info=future.exception())

    async def drain(self) -> None:
        """Wait for background Redis writes and lease releases (shutdown, tests)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
