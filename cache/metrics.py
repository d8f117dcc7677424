"""Prometheus metrics of the cache, render and prefetch paths, and the ``GET /metrics`` exposition.

Metric objects live at module level because prometheus-client registries are process-global; label
children used on hot paths are bound once here so a hit costs one locked add, not a label lookup.

Multi-process (``--workers N``): prometheus-client picks its value storage when it is first imported,
from ``PROMETHEUS_MULTIPROC_DIR``. To aggregate workers, the launcher (``web/cli.py``) must create an
empty directory, put its path in that variable *before* any worker imports prometheus_client, and pass
the same path to ``exposition(multiprocess_dir=...)``; gauges below carry the mode used to merge them.
Without it each worker reports only its own counts (whichever worker answers the scrape).
Must not read the environment itself or know HTTP frameworks (it returns bytes and a content type).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder

from cache.errors import CacheConfigError

CACHE_REQUESTS = Counter("tessera_cache_requests", "Cache lookups by tier and result", ["tier", "result"])
CACHE_EVICTIONS = Counter("tessera_cache_evictions", "Entries evicted to respect the byte bound", ["tier"])
CACHE_BYTES = Gauge(
    "tessera_cache_bytes", "Bytes held by the in-process cache", ["tier"], multiprocess_mode="livesum"
)
REDIS_ERRORS = Counter("tessera_redis_errors", "Redis calls that failed (timeout, refused, reset)", ["op"])
REDIS_SKIPPED = Counter(
    "tessera_redis_skipped", "Redis calls not attempted because the circuit breaker is open", ["op"]
)
REDIS_UP = Gauge(
    "tessera_redis_up", "1 while the Redis circuit is closed, 0 while open", multiprocess_mode="livemin"
)
SINGLEFLIGHT_WAITS = Counter(
    "tessera_singleflight_waits", "Callers that waited for another's computation", ["scope"]
)
SINGLEFLIGHT_COMPUTES = Counter("tessera_singleflight_computes", "Computations run after a cache miss")
RENDER_SECONDS = Histogram(
    "tessera_render_seconds",
    "Render time by transfer syntax and stage (decode, kernel, encode, total)",
    ["transfer_syntax", "stage"],
    # From the 0.04 ms kernel to a multi-second whole-slide tile: the FACTS codec floor spans 0.4-25 ms.
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
PREFETCH_QUEUE = Gauge("tessera_prefetch_queue_depth", "Prefetch jobs waiting", multiprocess_mode="livesum")
PREFETCH_JOBS = Counter(
    "tessera_prefetch_jobs", "Prefetch jobs by outcome (done, failed, dropped, cancelled)", ["outcome"]
)

MEMORY_HIT = CACHE_REQUESTS.labels("memory", "hit")
MEMORY_MISS = CACHE_REQUESTS.labels("memory", "miss")
REDIS_HIT = CACHE_REQUESTS.labels("redis", "hit")
REDIS_MISS = CACHE_REQUESTS.labels("redis", "miss")
MEMORY_EVICTIONS = CACHE_EVICTIONS.labels("memory")
MEMORY_BYTES = CACHE_BYTES.labels("memory")
WAITS_PROCESS = SINGLEFLIGHT_WAITS.labels("process")
WAITS_CLUSTER = SINGLEFLIGHT_WAITS.labels("cluster")
STAGES = ("decode", "kernel", "encode", "total")


@contextmanager
def render_timer(transfer_syntax: str, stage: str) -> Iterator[None]:
    """Time a block into ``tessera_render_seconds``. ``transfer_syntax`` is the UID (bounded set)."""
    if stage not in STAGES:
        raise CacheConfigError(f"stage {stage!r} is invalid: must be one of {', '.join(STAGES)}")
    start = time.perf_counter()
    try:
        yield
    finally:
        RENDER_SECONDS.labels(transfer_syntax, stage).observe(time.perf_counter() - start)


_RENDER_CHILDREN: dict[tuple[str, str], Any] = {}


def observe_render(transfer_syntax: str, stage: str, seconds: float) -> None:
    """Record a stage time measured elsewhere (e.g. inside the CPU pool, where no context manager fits).

    The labelled child is looked up once per (syntax, stage): ``labels()`` on every rendered frame
    was a measurable share of the request path.
    """
    child = _RENDER_CHILDREN.get((transfer_syntax, stage))
    if child is None:
        child = _RENDER_CHILDREN[(transfer_syntax, stage)] = RENDER_SECONDS.labels(transfer_syntax, stage)
    child.observe(seconds)


def exposition(accept: str | None = None, multiprocess_dir: str | None = None) -> tuple[bytes, str]:
    """Body and Content-Type for ``GET /metrics``, negotiated from the request's Accept header.

    Without Accept (or with text/plain) the classic text format 0.0.4 that every Prometheus parses;
    OpenMetrics when the scraper asks for it. With ``multiprocess_dir`` the answer merges every
    worker's files from that directory (see the module docstring); without it, this process's registry.
    """
    registry = REGISTRY
    if multiprocess_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)
    encode, content_type = choose_encoder(accept or "")
    return encode(registry), content_type
