"""Child-process body for the cross-process single-flight test (importable by spawned processes)."""

from __future__ import annotations

import asyncio
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier

from cache.memory import MemoryCache
from cache.redis_cache import RedisCache
from cache.singleflight import SingleFlight
from cache.tiered import TieredCache


def compute_once_across_processes(
    url: str, key: str, barrier: Barrier, computes: Synchronized[int], results: Queue[bytes]
) -> None:
    async def main() -> bytes:
        flight = SingleFlight(TieredCache(MemoryCache(1 << 20), RedisCache(url)), lease_ms=5000)

        async def compute() -> bytes:
            with computes.get_lock():
                computes.value += 1
            await asyncio.sleep(0.3)  # long enough that the other process surely asks meanwhile
            return b"rendered-once"

        barrier.wait()
        value = await flight.get_or_compute(key, compute)
        await flight.drain()  # the value must reach Redis before this process ends
        flight.cache.close()
        return value

    results.put(asyncio.run(main()))
