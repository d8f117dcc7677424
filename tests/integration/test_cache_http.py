"""The tiered cache behind a real server: single-flight over HTTP, invalidation by content after
delete and re-upload, Redis stopped and restarted in the middle, /metrics."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import httpx

from tests.conftest import PrivateRedis, start_server, stop_server
from tests.dicomweb_helpers import stow
from tests.qido_cases import STUDIES, make_instance, series_uid, sop_uid, study_uid

S1 = STUDIES[0]


def metric(root: str, name: str, **labels: str) -> float:
    text = httpx.get(root + "/metrics").text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:]+)(\{[^}]*\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total


def rendered_url(root: str, number: int, instance_number: int = 1) -> str:
    return (
        f"{root}/studies/{study_uid('S1')}/series/{series_uid('S1', 1)}/instances/"
        f"{sop_uid('S1', 1, instance_number)}/frames/{number}/rendered"
    )


def test_concurrent_requests_render_once(tmp_path: Path, private_redis: PrivateRedis) -> None:
    server = start_server(tmp_path / "data", env={"TESSERA_REDIS_URL": private_redis.url, "TESSERA_PREFETCH_NEIGHBOURS": "0"})
    try:
        assert stow(server.url, [make_instance(S1, 1, "CT", 1)]).status_code == 200
        before = metric(server.root, "tessera_singleflight_computes_total")

        async def hammer() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                url = rendered_url(server.url, 1) + "?viewport=64,64"
                return await asyncio.gather(*(client.get(url) for _ in range(20)))

        responses = asyncio.run(hammer())
        assert {r.status_code for r in responses} == {200}
        assert len({r.content for r in responses}) == 1
        assert metric(server.root, "tessera_singleflight_computes_total") - before == 1
        assert metric(server.root, "tessera_singleflight_waits_total") >= 1
        assert private_redis.keys() >= 1  # published for the other processes
    finally:
        stop_server(server)


def test_delete_and_reupload_with_other_pixels_never_serves_stale(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", env={"TESSERA_PREFETCH_NEIGHBOURS": "0"})
    try:
        original = make_instance(S1, 1, "CT", 2)
        assert stow(server.url, [original]).status_code == 200
        url = rendered_url(server.url, 1, 2) + "?window=20,40,linear"
        first = httpx.get(url, headers={"Accept": "image/png"})
        again = httpx.get(url, headers={"Accept": "image/png"})
        assert first.content == again.content
        assert metric(server.root, "tessera_cache_requests_total", result="hit") >= 1
        instance = f"{server.url}/studies/{study_uid('S1')}/series/{series_uid('S1', 1)}/instances/{sop_uid('S1', 1, 2)}"
        assert httpx.delete(instance).status_code == 204
        assert httpx.get(url, headers={"Accept": "image/png"}).status_code == 404
        changed = make_instance(S1, 1, "CT", 3).replace(sop_uid("S1", 1, 3).encode(), sop_uid("S1", 1, 2).encode())
        assert stow(server.url, [changed]).status_code == 200
        after = httpx.get(url, headers={"Accept": "image/png"})
        assert after.status_code == 200
        assert after.content != first.content
        assert after.headers["etag"] != first.headers["etag"]
    finally:
        stop_server(server)


def test_redis_stopped_and_restarted_mid_test(tmp_path: Path, private_redis: PrivateRedis) -> None:
    server = start_server(tmp_path / "data", env={"TESSERA_REDIS_URL": private_redis.url, "TESSERA_PREFETCH_NEIGHBOURS": "0"})
    try:
        blobs = [make_instance(S1, 1, "CT", n) for n in range(1, 9)]
        assert stow(server.url, blobs).status_code == 200
        assert httpx.get(rendered_url(server.url, 1, 1)).status_code == 200
        deadline = time.monotonic() + 5
        while private_redis.keys() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)  # the value is published to Redis in the background
        assert private_redis.keys() >= 1
        private_redis.stop()
        for n in range(2, 5):
            started = time.monotonic()
            response = httpx.get(rendered_url(server.url, 1, n), timeout=10)
            assert response.status_code == 200
            assert time.monotonic() - started < 2.0
        assert metric(server.root, "tessera_redis_errors_total") >= 1
        private_redis.start()  # a new, empty server on the same port
        deadline = time.monotonic() + 10
        attempt = 0
        while private_redis.keys() == 0 and time.monotonic() < deadline:
            # Each request is an image not rendered before (a repeat would be a memory hit and never
            # reach Redis); once the circuit closes again values land in Redis.
            n, quality = 5 + attempt % 4, 50 + attempt % 50
            attempt += 1
            assert httpx.get(rendered_url(server.url, 1, n) + f"?quality={quality}").status_code == 200
            time.sleep(0.2)
        assert private_redis.keys() >= 1
    finally:
        stop_server(server)


def test_metrics_endpoint_and_prefetch(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", env={"TESSERA_PREFETCH_NEIGHBOURS": "2"})
    try:
        assert stow(server.url, [make_instance(S1, 1, "CT", n) for n in range(1, 8)]).status_code == 200
        assert httpx.get(rendered_url(server.url, 1, 4)).status_code == 200
        deadline = time.monotonic() + 10
        while metric(server.root, "tessera_prefetch_jobs_total", outcome="done") < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metric(server.root, "tessera_prefetch_jobs_total", outcome="done") >= 6
        hits = metric(server.root, "tessera_cache_requests_total", result="hit")
        assert httpx.get(rendered_url(server.url, 1, 5)).status_code == 200  # a neighbour: already warm
        assert metric(server.root, "tessera_cache_requests_total", result="hit") > hits
        text = httpx.get(server.root + "/metrics").text
        assert "tessera_render_seconds_bucket" in text
        for stage in ("decode", "kernel", "encode", "total"):
            assert f'stage="{stage}"' in text, stage
        assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") is None
    finally:
        stop_server(server)


def test_new_window_on_a_compressed_frame_does_not_decode_again(tmp_path: Path) -> None:
    from archive.synth import write_series

    files = write_series(tmp_path / "j2k", modality="CT", rows=64, columns=64, slices=1, syntax="j2k", seed=5)
    server = start_server(tmp_path / "data", env={"TESSERA_PREFETCH_NEIGHBOURS": "0"})
    try:
        import pydicom

        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        assert stow(server.url, [files[0].read_bytes()]).status_code == 200
        url = (
            f"{server.url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
            f"{ds.SOPInstanceUID}/rendered"
        )
        assert httpx.get(url + "?window=40,400,linear").status_code == 200
        misses = metric(server.root, "tessera_cache_requests_total", tier="decoded", result="miss")
        hits = metric(server.root, "tessera_cache_requests_total", tier="decoded", result="hit")
        for window in ("-600,1500,linear", "300,1500,linear-exact", "50,80,sigmoid"):
            assert httpx.get(url + f"?window={window}").status_code == 200
        assert metric(server.root, "tessera_cache_requests_total", tier="decoded", result="hit") - hits == 3
        assert metric(server.root, "tessera_cache_requests_total", tier="decoded", result="miss") == misses
    finally:
        stop_server(server)
