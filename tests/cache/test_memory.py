"""The in-process LRU: byte bound, eviction order, counters, 0 = off, thread safety."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import REGISTRY

from cache.errors import CacheConfigError
from cache.memory import ENTRY_OVERHEAD, MemoryCache


def charge(key: str, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD


def test_byte_bound_holds_and_evicts_least_recently_used() -> None:
    value = b"x" * 1000
    per = charge("k0", value)
    cache = MemoryCache(per * 3, max_item_bytes=per)
    cache.put_many([("k0", value), ("k1", value), ("k2", value)])
    assert cache.keys_lru_first() == ["k0", "k1", "k2"]
    cache.get_many(["k0"])  # k0 becomes most recent: k1 is now the oldest
    cache.put_many([("k3", value)])
    assert cache.keys_lru_first() == ["k2", "k0", "k3"]
    assert cache.get_many(["k1"]) == [None]
    stats = cache.stats()
    assert stats.bytes == 3 * per <= stats.max_bytes
    assert stats.evictions == 1


def test_bound_counts_bytes_not_entries() -> None:
    cache = MemoryCache(10_000, max_item_bytes=10_000)
    cache.put_many([("big", b"x" * 6000)])
    cache.put_many([("big2", b"x" * 6000)])  # both cannot fit in 10 kB
    assert cache.get_many(["big", "big2"]) == [None, b"x" * 6000]
    cache.put_many([(f"s{i}", b"y") for i in range(100)])  # tiny entries still pay their overhead
    assert cache.stats().bytes <= 10_000
    assert cache.stats().entries == 10_000 // charge("s10", b"y")


def test_item_over_max_item_bytes_is_not_stored_and_evicts_nothing() -> None:
    cache = MemoryCache(100_000, max_item_bytes=5000)
    cache.put_many([("small", b"s" * 100)])
    cache.put_many([("huge", b"h" * 6000)])
    assert cache.get_many(["small", "huge"]) == [b"s" * 100, None]


def test_replacing_a_key_keeps_the_byte_count_exact() -> None:
    cache = MemoryCache(1 << 20)
    cache.put_many([("k", b"a" * 500)])
    cache.put_many([("k", b"b" * 100)])
    assert cache.stats().bytes == charge("k", b"b" * 100)
    assert cache.stats().entries == 1


def test_zero_bytes_is_off() -> None:
    cache = MemoryCache(0)
    cache.put_many([("k", b"v")])
    assert cache.get_many(["k"]) == [None]
    assert not cache.enabled
    assert cache.stats().entries == 0


def test_negative_bound_is_refused() -> None:
    with pytest.raises(CacheConfigError, match="max_bytes must be >= 0"):
        MemoryCache(-1)


def test_hits_misses_evictions_counted_and_exported() -> None:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = (
        sample("tessera_cache_requests_total", tier="memory", result="hit"),
        sample("tessera_cache_requests_total", tier="memory", result="miss"),
        sample("tessera_cache_evictions_total", tier="memory"),
    )
    per = charge("a", b"1" * 100)
    cache = MemoryCache(per * 2, max_item_bytes=per)
    cache.put_many([("a", b"1" * 100), ("b", b"2" * 100), ("c", b"3" * 100)])
    cache.get_many(["a", "b", "c", "d"])
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.evictions) == (2, 2, 1)
    after = (
        sample("tessera_cache_requests_total", tier="memory", result="hit"),
        sample("tessera_cache_requests_total", tier="memory", result="miss"),
        sample("tessera_cache_evictions_total", tier="memory"),
    )
    assert tuple(a - b for a, b in zip(after, before)) == (2, 2, 1)


def test_stored_values_are_not_aliased_to_mutable_buffers() -> None:
    cache = MemoryCache(1 << 20)
    buf = bytearray(b"abc")
    cache.put_many([("k", buf)])  # type: ignore[list-item]
    buf[0] = ord("z")
    assert cache.get_many(["k"]) == [b"abc"]


def test_concurrent_use_keeps_the_bound_and_the_count() -> None:
    per = charge("t0-000", b"v" * 1000)
    cache = MemoryCache(per * 50, max_item_bytes=per)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(2000):
                key = f"t{t}-{i % 200:03d}"
                if cache.get_many([key])[0] is None:
                    cache.put_many([(key, b"v" * 1000)])
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    stats = cache.stats()
    assert stats.bytes == stats.entries * per <= per * 50
    assert stats.hits + stats.misses == 8 * 2000
