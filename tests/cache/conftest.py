"""Fixtures for the cache tests: the shared Redis on 127.0.0.1:6379 and private redis-servers.

No fakes: every Redis test talks to a real server. A missing Redis fails the run (skipping is not
passing), with a message saying how to get one. Tests that stop, stall or flush Redis use a PRIVATE
redis-server on a free port, never the shared one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from cache.memory import MemoryCache
from cache.redis_cache import RedisCache
from cache.tiered import TieredCache
from tests.conftest import IN_CI

SHARED_URL = "redis://127.0.0.1:6379/0"


def _missing(what: str) -> str:
    where = "CI (CI=true): .ci/run must start Redis before the tests" if IN_CI else "this machine"
    return f"{what} is required by tests/cache and is missing on {where}; install redis-server (apt-get install redis-server)"


@pytest.fixture(scope="session")
def shared_redis_url() -> str:
    client = redis.Redis.from_url(SHARED_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(_missing(f"Redis at 127.0.0.1:6379 ({exc})"), pytrace=False)
    finally:
        client.close()
    return SHARED_URL


@pytest.fixture
def prefix() -> str:
    """A namespace of its own for each test, so runs sharing the Redis on 6379 never collide."""
    return f"tessera:test:{uuid.uuid4().hex}:"


@pytest.fixture(params=["memory", "redis", "tiered"])
def backend(request: pytest.FixtureRequest, prefix: str) -> Iterator[MemoryCache | RedisCache | TieredCache]:
    """The same contract runs against each implementation of cache.base.Cache."""
    kind = request.param
    cache: MemoryCache | RedisCache | TieredCache
    if kind == "memory":
        cache = MemoryCache(64 << 20)
    elif kind == "redis":
        cache = RedisCache(request.getfixturevalue("shared_redis_url"))
    else:
        cache = TieredCache(MemoryCache(64 << 20), RedisCache(request.getfixturevalue("shared_redis_url")))
    yield cache
    cache.delete_prefix(prefix)
    cache.close()
