"""Caches for rendered images, decoded frames and query answers (memory LRU and Redis).

``TieredCache.build(memory_bytes=..., redis_url=..., ttl_seconds=...)`` is the one object the web layer
holds; ``SingleFlight`` computes a missing key once; ``Prefetcher`` warms series in the background;
``cache.keys`` builds every key; ``cache.metrics`` exposes Prometheus metrics.
"""

from cache.base import Cache
from cache.errors import CacheConfigError, CacheError, CacheKeyError
from cache.memory import MemoryCache
from cache.prefetch import Prefetcher, interleaved_order, neighbours_order
from cache.redis_cache import RedisCache
from cache.singleflight import SingleFlight
from cache.tiered import TieredCache

__all__ = [
    "Cache",
    "CacheConfigError",
    "CacheError",
    "CacheKeyError",
    "MemoryCache",
    "Prefetcher",
    "RedisCache",
    "SingleFlight",
    "TieredCache",
    "interleaved_order",
    "neighbours_order",
]
