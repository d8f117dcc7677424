"""The cache.base.Cache contract, run unchanged against memory, Redis and the tiered cache."""

from __future__ import annotations

import os
import time

from cache.base import Cache
from cache.memory import MemoryCache
from cache.redis_cache import RedisCache
from cache.tiered import TieredCache

AnyCache = MemoryCache | RedisCache | TieredCache


def test_implements_protocol(backend: AnyCache) -> None:
    assert isinstance(backend, Cache)


def test_miss_then_hit_in_order(backend: AnyCache, prefix: str) -> None:
    a, b, c = prefix + "a", prefix + "b", prefix + "c"
    assert backend.get_many([a, b, c]) == [None, None, None]
    jpeg = os.urandom(26_000)
    backend.put_many([(a, jpeg), (c, b"\x00")])
    assert backend.get_many([c, b, a]) == [b"\x00", None, jpeg]


def test_empty_calls(backend: AnyCache) -> None:
    assert backend.get_many([]) == []
    backend.put_many([])


def test_overwrite_replaces_value(backend: AnyCache, prefix: str) -> None:
    backend.put_many([(prefix + "k", b"old")])
    backend.put_many([(prefix + "k", b"new")])
    assert backend.get_many([prefix + "k"]) == [b"new"]


def test_binary_values_round_trip(backend: AnyCache, prefix: str) -> None:
    value = bytes(range(256)) * 10 + b"\r\n\x00"
    backend.put_many([(prefix + "bin", value)])
    assert backend.get_many([prefix + "bin"]) == [value]


def test_delete_prefix_removes_only_that_prefix(backend: AnyCache, prefix: str) -> None:
    backend.put_many([(prefix + "x:1", b"1"), (prefix + "x:2", b"2"), (prefix + "y:1", b"3")])
    assert backend.delete_prefix(prefix + "x:") == 2
    assert backend.get_many([prefix + "x:1", prefix + "x:2", prefix + "y:1"]) == [None, None, b"3"]


def test_delete_prefix_treats_glob_characters_literally(backend: AnyCache, prefix: str) -> None:
    backend.put_many([(prefix + "a*", b"1"), (prefix + "ab", b"2")])
    assert backend.delete_prefix(prefix + "a*") == 1
    assert backend.get_many([prefix + "ab"]) == [b"2"]


def test_ttl_expires(backend: AnyCache, prefix: str) -> None:
    backend.put_many([(prefix + "short", b"v")], ttl_seconds=1)
    backend.put_many([(prefix + "long", b"v")], ttl_seconds=60)
    assert backend.get_many([prefix + "short"]) == [b"v"]
    deadline = time.monotonic() + 5
    while backend.get_many([prefix + "short"]) != [None]:
        assert time.monotonic() < deadline, "entry with a 1 s TTL still there after 5 s"
        time.sleep(0.05)  # polling for expiry with a deadline
    assert backend.get_many([prefix + "long"]) == [b"v"]
