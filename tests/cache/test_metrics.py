"""Prometheus exposition, render stage timing and the multi-process mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cache import metrics
from cache.errors import CacheConfigError
from cache.memory import MemoryCache

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def test_exposition_lists_the_metrics() -> None:
    MemoryCache(1024).get_many(["x"])
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain; version=0.0.4")
    open_body, open_type = metrics.exposition("application/openmetrics-text; version=1.0.0")
    assert open_type.startswith("application/openmetrics-text") and open_body.endswith(b"# EOF\n")
    text = body.decode()
    for name in (
        "tessera_cache_requests_total",
        "tessera_cache_evictions_total",
        "tessera_redis_errors_total",
        "tessera_singleflight_waits_total",
        "tessera_render_seconds",
        "tessera_prefetch_queue_depth",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text


def test_render_timer_records_per_syntax_and_stage() -> None:
    def count() -> float:
        return (
            metrics.REGISTRY.get_sample_value(
                "tessera_render_seconds_count", {"transfer_syntax": JPEG_BASELINE, "stage": "decode"}
            )
            or 0.0
        )

    before = count()
    with metrics.render_timer(JPEG_BASELINE, "decode"):
        pass
    metrics.observe_render(JPEG_BASELINE, "decode", 0.002)
    assert count() - before == 2


def test_unknown_stage_is_refused() -> None:
    with (
        pytest.raises(CacheConfigError, match="stage 'paint' is invalid"),
        metrics.render_timer(JPEG_BASELINE, "paint"),
    ):
        pass


def test_multiprocess_mode_merges_workers(tmp_path: Path) -> None:
    script = "from cache.memory import MemoryCache\nMemoryCache(1 << 20).get_many(['a', 'b', 'c'])\n"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    root = Path(__file__).resolve().parents[2]
    for _ in range(2):  # two "workers"
        subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=root)
    body, _ = metrics.exposition(multiprocess_dir=str(tmp_path))
    line = next(
        ln
        for ln in body.decode().splitlines()
        if ln.startswith("tessera_cache_requests_total{") and 'result="miss"' in ln and 'tier="memory"' in ln
    )
    assert float(line.rsplit(" ", 1)[1]) == 6.0
