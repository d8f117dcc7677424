"""Redis is never a point of failure: stopped, stalled or flushed, calls answer quickly.

Every test here uses a PRIVATE redis-server (tests/cache/conftest.py), never the shared one on 6379.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from prometheus_client import REGISTRY

from cache.memory import MemoryCache
from cache.redis_cache import RedisCache
from cache.tiered import TieredCache
from tests.conftest import PrivateRedis

LOGGER = "cache.redis_cache"
FAST = 0.25  # a failed call must answer well within this (socket timeout is 50 ms); the box is noisy


def redis_errors() -> float:
    return sum(
        REGISTRY.get_sample_value("tessera_redis_errors_total", {"op": op}) or 0.0
        for op in ("get", "put", "delete", "lease", "ping")
    )


def wait_until(predicate: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.02)  # polling with a deadline


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


def test_stopped_redis_gives_quick_misses_logs_once_then_recovers(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    cache = RedisCache(private_redis.url, retry_interval=0.2)
    cache.put_many([("k", b"v")])
    assert cache.get_many(["k"]) == [b"v"]
    errors_before = redis_errors()

    private_redis.stop()
    worst = 0.0
    for _ in range(100):
        start = time.perf_counter()
        assert cache.get_many(["k", "j"]) == [None, None]
        cache.put_many([("k", b"w")])
        worst = max(worst, time.perf_counter() - start)
    assert worst < FAST, f"a call with Redis down took {worst * 1000:.0f} ms"
    assert not cache.available
    assert redis_errors() > errors_before
    assert len(records(caplog, logging.WARNING)) == 1, "the outage must be logged once, not per call"
    assert "failed" in records(caplog, logging.WARNING)[0].getMessage()

    # Still down after several retry intervals: probes fail, still one warning.
    time.sleep(0.5)
    for _ in range(10):
        cache.get_many(["k"])
    assert len(records(caplog, logging.WARNING)) == 1

    private_redis.start()  # same port: the client must reconnect by itself
    wait_until(lambda: cache.get_many(["k"]) == [None] and cache.available)
    cache.put_many([("k", b"again")])
    assert cache.get_many(["k"]) == [b"again"]
    assert len(records(caplog, logging.INFO)) == 1
    assert "answers again" in records(caplog, logging.INFO)[0].getMessage()

    private_redis.stop()  # a second outage is logged again, once
    for _ in range(20):
        assert cache.get_many(["k"]) == [None]
    assert len(records(caplog, logging.WARNING)) == 2
    cache.close()


def test_stalled_redis_times_out_quickly(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    cache = RedisCache(private_redis.url, retry_interval=0.1)
    cache.put_many([("k", b"v")])
    admin = private_redis.client()
    admin.client_pause(600, all=True)  # the server stops answering everyone for 0.6 s
    start = time.perf_counter()
    assert cache.get_many(["k"]) == [None]
    assert time.perf_counter() - start < FAST
    assert len(records(caplog, logging.WARNING)) == 1
    assert "Timeout" in records(caplog, logging.WARNING)[0].getMessage()
    wait_until(lambda: cache.get_many(["k"]) == [b"v"])  # served again once the pause ends
    admin.close()
    cache.close()


def test_flushed_redis_gives_misses_without_errors(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    cache = RedisCache(private_redis.url)
    cache.put_many([("a", b"1"), ("b", b"2")])
    assert cache.acquire_lease("lease", "t1", 5000) is True
    errors_before = redis_errors()
    admin = private_redis.client()
    admin.flushall()
    assert cache.get_many(["a", "b"]) == [None, None]
    cache.release_lease("lease", "t1")  # the release script is gone from the server too: reloaded
    assert cache.acquire_lease("lease", "t2", 5000) is True
    cache.put_many([("a", b"3")])
    assert cache.get_many(["a"]) == [b"3"]
    assert redis_errors() == errors_before
    assert records(caplog, logging.WARNING) == []
    admin.close()
    cache.close()


def test_tiered_keeps_serving_memory_while_redis_is_down(private_redis: PrivateRedis) -> None:
    tiered = TieredCache(MemoryCache(1 << 20), RedisCache(private_redis.url, retry_interval=0.2))
    tiered.put_many([("hot", b"h")])
    private_redis.stop()
    start = time.perf_counter()
    assert tiered.get_many(["hot", "cold"]) == [b"h", None]
    tiered.put_many([("new", b"n")])  # memory takes it, Redis drops it
    assert tiered.get_many(["new"]) == [b"n"]
    assert time.perf_counter() - start < FAST
    tiered.close()


def test_redis_hit_fills_memory(shared_redis_url: str, prefix: str) -> None:
    shared = RedisCache(shared_redis_url)
    shared.put_many([(prefix + "k", b"from-redis")])
    memory = MemoryCache(1 << 20)
    tiered = TieredCache(memory, shared)
    assert memory.get_many([prefix + "k"]) == [None]
    assert tiered.get_many([prefix + "k"]) == [b"from-redis"]
    assert memory.get_many([prefix + "k"]) == [b"from-redis"]
    assert tiered.peek_many([prefix + "k"]) == [b"from-redis"]
    shared.delete_prefix(prefix)
    tiered.close()


def test_many_threads_during_an_outage_log_once(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    cache = RedisCache(private_redis.url, retry_interval=0.05)
    cache.get_many(["warm"])
    private_redis.stop()

    def hammer() -> None:
        for _ in range(200):
            cache.get_many(["k"])

    threads = [threading.Thread(target=hammer) for _ in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(records(caplog, logging.WARNING)) == 1
    cache.close()
