"""Single-flight: one computation per missing key, in a process and across processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from cache import keys
from cache.memory import MemoryCache
from cache.redis_cache import RedisCache
from cache.singleflight import SingleFlight
from cache.tiered import TieredCache
from tests.cache.mp_helpers import compute_once_across_processes
from tests.conftest import PrivateRedis


def waits(scope: str) -> float:
    return REGISTRY.get_sample_value("tessera_singleflight_waits_total", {"scope": scope}) or 0.0


class Counted:
    """A compute function that counts its calls and takes a while, so callers overlap."""

    def __init__(self, value: bytes = b"jpeg", delay: float = 0.05, error: Exception | None = None) -> None:
        self.calls = 0
        self.value = value
        self.delay = delay
        self.error = error

    async def __call__(self) -> bytes:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.value


@pytest.fixture(params=["memory-only", "with-redis"])
def flight(request: pytest.FixtureRequest, prefix: str) -> Iterator[SingleFlight]:
    redis = RedisCache(request.getfixturevalue("shared_redis_url")) if request.param == "with-redis" else None
    sf = SingleFlight(TieredCache(MemoryCache(1 << 20), redis))
    yield sf
    if redis is not None:
        redis.delete_prefix(prefix)
    sf.cache.close()


def test_twenty_concurrent_callers_compute_once(flight: SingleFlight, prefix: str) -> None:
    compute = Counted()
    before = waits("process")

    async def main() -> list[bytes]:
        results = await asyncio.gather(*(flight.get_or_compute(prefix + "k", compute) for _ in range(20)))
        await flight.drain()
        return results

    assert asyncio.run(main()) == [b"jpeg"] * 20
    assert compute.calls == 1
    assert flight.computes == 1
    assert flight.process_waits == 19
    assert waits("process") - before == 19
    assert flight.in_flight == 0


def test_later_callers_hit_the_cache(flight: SingleFlight, prefix: str) -> None:
    compute = Counted()

    async def main() -> None:
        await flight.get_or_compute(prefix + "k", compute)
        await flight.drain()
        assert await flight.get_or_compute(prefix + "k", compute) == b"jpeg"

    asyncio.run(main())
    assert compute.calls == 1


def test_an_error_reaches_every_waiter_and_is_not_cached(flight: SingleFlight, prefix: str) -> None:
    failing = Counted(error=RuntimeError("decoder exploded"))

    async def main() -> list[object]:
        return await asyncio.gather(
            *(flight.get_or_compute(prefix + "k", failing) for _ in range(5)), return_exceptions=True
        )

    outcomes = asyncio.run(main())
    assert failing.calls == 1
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    good = Counted(b"fine")

    async def retry() -> bytes:
        value = await flight.get_or_compute(prefix + "k", good)
        await flight.drain()
        return value

    assert asyncio.run(retry()) == b"fine"  # the failure was not remembered; the lease was released
    assert good.calls == 1


def test_a_cancelled_caller_does_not_cancel_the_others(flight: SingleFlight, prefix: str) -> None:
    compute = Counted(delay=0.1)

    async def main() -> bytes:
        first = asyncio.ensure_future(flight.get_or_compute(prefix + "k", compute))
        second = asyncio.ensure_future(flight.get_or_compute(prefix + "k", compute))
        await asyncio.sleep(0.02)
        first.cancel()  # e.g. the client of the first request went away
        value = await second
        await flight.drain()
        return value

    assert asyncio.run(main()) == b"jpeg"
    assert compute.calls == 1


def test_different_keys_compute_separately(flight: SingleFlight, prefix: str) -> None:
    a, b = Counted(b"a"), Counted(b"b")

    async def main() -> list[bytes]:
        results = await asyncio.gather(
            flight.get_or_compute(prefix + "a", a), flight.get_or_compute(prefix + "b", b)
        )
        await flight.drain()
        return list(results)

    assert asyncio.run(main()) == [b"a", b"b"]
    assert (a.calls, b.calls) == (1, 1)


def test_two_processes_sharing_redis_compute_once(shared_redis_url: str, prefix: str) -> None:
    ctx = multiprocessing.get_context("spawn")  # fork with live threads is unsafe (and warns)
    barrier = ctx.Barrier(2)
    computes = ctx.Value("i", 0)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=compute_once_across_processes,
            args=(shared_redis_url, prefix + "k", barrier, computes, results),
        )
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    values = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert values == [b"rendered-once", b"rendered-once"]
    assert computes.value == 1
    RedisCache(shared_redis_url).delete_prefix(prefix)


def test_a_lease_held_elsewhere_is_waited_for(shared_redis_url: str, prefix: str) -> None:
    """Another process holds the lease and publishes; this one polls and never computes."""
    other = RedisCache(shared_redis_url)
    key = prefix + "k"
    assert other.acquire_lease(keys.lease(key), "other", 5000) is True
    sf = SingleFlight(TieredCache(MemoryCache(1 << 20), RedisCache(shared_redis_url)))
    compute = Counted(b"mine")
    before = waits("cluster")

    async def main() -> bytes:
        task = asyncio.ensure_future(sf.get_or_compute(key, compute))
        await asyncio.sleep(0.1)
        other.put_many([(key, b"theirs")])
        other.release_lease(keys.lease(key), "other")
        return await task

    assert asyncio.run(main()) == b"theirs"
    assert compute.calls == 0
    assert waits("cluster") - before == 1
    assert sf.cache.memory.get(key) == b"theirs"
    other.delete_prefix(prefix)
    other.delete_prefix(keys.lease(key))


def test_a_lease_whose_holder_died_expires_and_we_compute(shared_redis_url: str, prefix: str) -> None:
    other = RedisCache(shared_redis_url)
    key = prefix + "k"
    assert other.acquire_lease(keys.lease(key), "crashed", 300) is True  # the holder never returns
    sf = SingleFlight(TieredCache(MemoryCache(1 << 20), RedisCache(shared_redis_url)), lease_ms=300)
    compute = Counted(b"mine")

    async def main() -> bytes:
        value = await sf.get_or_compute(key, compute)
        await sf.drain()
        return value

    start = time.monotonic()
    assert asyncio.run(main()) == b"mine"
    assert compute.calls == 1
    assert time.monotonic() - start < 2.0
    other.delete_prefix(prefix)


def test_redis_down_means_compute_at_once(private_redis: PrivateRedis, prefix: str) -> None:
    sf = SingleFlight(TieredCache(MemoryCache(1 << 20), RedisCache(private_redis.url)))
    private_redis.stop()
    compute = Counted(delay=0.0)

    async def main() -> list[bytes]:
        results = await asyncio.gather(*(sf.get_or_compute(prefix + "k", compute) for _ in range(5)))
        await sf.drain()
        return results

    start = time.monotonic()
    assert asyncio.run(main()) == [b"jpeg"] * 5
    assert compute.calls == 1  # in-process single-flight still holds
    assert time.monotonic() - start < 0.5
    sf.cache.close()
