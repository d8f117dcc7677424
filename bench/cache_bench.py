"""Cache micro-benchmark: reads of one cached 26 kB JPEG from the memory tier and from Redis.

A script, not a test. For each tier it runs N gets on 1 thread and on 16 threads and prints ops/s
(median of several runs) as a table and JSON. Also the tiered cache on a memory hit, the path a hot
rendered frame takes, and single-flight's ``get_or_compute`` on a memory hit (the event-loop path).

    .venv/bin/python bench/cache_bench.py [--redis redis://127.0.0.1:6379/0] [--ops 20000] [--runs 5]

Uses keys under ``tessera:bench:`` on the given Redis and removes them afterwards. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cache.memory import MemoryCache
from cache.redis_cache import RedisCache
from cache.singleflight import SingleFlight
from cache.tiered import TieredCache

KEY = "tessera:bench:jpeg"
JPEG = os.urandom(26_000)  # incompressible like a JPEG; the content does not matter to a cache


def ops_per_second(get: Callable[[], object], ops: int, threads: int) -> float:
    per_thread = ops // threads

    def loop() -> None:
        for _ in range(per_thread):
            get()

    start = time.perf_counter()
    if threads == 1:
        loop()
    else:
        with ThreadPoolExecutor(threads) as pool:
            for future in [pool.submit(loop) for _ in range(threads)]:
                future.result()
    return per_thread * threads / (time.perf_counter() - start)


def singleflight_hit_rate(flight: SingleFlight, ops: int) -> float:
    async def compute() -> bytes:
        raise AssertionError("the value is cached; compute must not run")

    async def main() -> float:
        start = time.perf_counter()
        for _ in range(ops):
            await flight.get_or_compute(KEY, compute)
        return ops / (time.perf_counter() - start)

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--ops", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    memory = MemoryCache(64 << 20)
    redis = RedisCache(args.redis, socket_timeout=0.5)  # generous: a noisy box must not trip the breaker
    tiered = TieredCache(MemoryCache(64 << 20), redis)
    memory.put_many([(KEY, JPEG)])
    tiered.put_many([(KEY, JPEG)])
    assert memory.get(KEY) == JPEG and redis.get(KEY) == JPEG, "value not cached: is Redis up?"
    flight = SingleFlight(tiered)

    cases: dict[str, Callable[[], object]] = {
        "memory": lambda: memory.get(KEY),
        "redis": lambda: redis.get(KEY),
        "tiered (memory hit)": lambda: tiered.get(KEY),
    }
    results: dict[str, dict[str, float]] = {}
    for name, get in cases.items():
        results[name] = {}
        for threads in (1, 16):
            ops = args.ops if name != "redis" else max(args.ops // 4, 1600)  # Redis is ~100x slower
            runs = [ops_per_second(get, ops, threads) for _ in range(args.runs)]
            results[name][f"{threads} thread{'s' if threads > 1 else ''}"] = statistics.median(runs)
    results["singleflight (memory hit, event loop)"] = {
        "1 thread": statistics.median(singleflight_hit_rate(flight, args.ops) for _ in range(args.runs))
    }
    redis.delete_prefix("tessera:bench:")
    tiered.close()

    print(
        f"{'get of a cached 26 kB value':42} {'1 thread':>14} {'16 threads':>14}   (ops/s, median of {args.runs})"
    )
    for name, row in results.items():
        cells = [f"{row[c]:>14,.0f}" if c in row else f"{'-':>14}" for c in ("1 thread", "16 threads")]
        print(f"{name:42} {cells[0]} {cells[1]}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
