"""The progressive series stream and tiles behind a real server on 127.0.0.1, driven with httpx:
parts arrive in the chosen order and their Content-Location URLs answer the same image; a client
that reads two parts and closes the connection stops the server's rendering; twenty concurrent tiles
of one 2048x2048 JPEG 2000 frame decode it once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from archive.synth import synth_series
from cache.prefetch import interleaved_order
from tests.conftest import Server, start_server, stop_server
from tests.dicomweb_helpers import part10, split_multipart, stow
from tests.integration.test_cache_http import metric

SLICES = 60


@dataclass
class Loaded:
    server: Server
    study: str
    series: str
    sops: list[str]  # instance order
    large: tuple[str, str, str]  # study, series, SOP Instance UID of the 2048x2048 frame


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    # No neighbour or series prefetch: every render the server counts is one the test asked for.
    server = start_server(tmp_path_factory.mktemp("stream") / "data",
                          env={"TESSERA_PREFETCH_NEIGHBOURS": "0", "TESSERA_CPU_THREADS": "2"})
    try:
        series = list(synth_series(rows=64, columns=64, slices=SLICES, syntax="explicit", seed=21))
        assert stow(server.url, [part10(ds) for ds in series]).status_code == 200
        [large] = synth_series(rows=2048, columns=2048, slices=1, syntax="j2k", seed=22)
        assert stow(server.url, [part10(large)]).status_code == 200
        yield Loaded(server, str(series[0].StudyInstanceUID), str(series[0].SeriesInstanceUID),
                     [str(ds.SOPInstanceUID) for ds in series],
                     (str(large.StudyInstanceUID), str(large.SeriesInstanceUID), str(large.SOPInstanceUID)))
    finally:
        stop_server(server)


def _series_url(loaded: Loaded) -> str:
    return f"{loaded.server.url}/studies/{loaded.study}/series/{loaded.series}/rendered"


def test_parts_in_interleaved_order_and_content_locations_answer(loaded: Loaded) -> None:
    response = httpx.get(_series_url(loaded), params={"viewport": "32,32", "quality": "70"}, timeout=30)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "private, no-cache"
    parts = split_multipart(response)
    expected = [
        f"{loaded.server.url}/studies/{loaded.study}/series/{loaded.series}/instances/{loaded.sops[i]}"
        f"/frames/1/rendered?viewport=32%2C32&quality=70"
        for i in interleaved_order(SLICES)
    ]
    assert [h["content-location"] for h, _ in parts] == expected
    for headers, body in parts[:3]:
        single = httpx.get(headers["content-location"], timeout=10)
        assert single.status_code == 200 and single.content == body


def _computes(root: str) -> float:
    return metric(root, "tessera_singleflight_computes_total")


def _settled(root: str, deadline_s: float = 20.0) -> float:
    """The render counter once it has stopped growing (three equal reads 100 ms apart)."""
    deadline = time.monotonic() + deadline_s
    last, same = _computes(root), 0
    while time.monotonic() < deadline:
        time.sleep(0.1)  # polling a counter with a deadline, not waiting blindly
        now = _computes(root)
        same = same + 1 if now == last else 0
        if same >= 3:
            return now
        last = now
    pytest.fail("the render counter kept growing for 20 s after the client went away")


def test_closing_the_connection_stops_rendering(loaded: Loaded) -> None:
    root = loaded.server.root
    before = _settled(root)
    # Frames enlarged to 2048x2048 take tens of milliseconds each, like full-size frames of a real
    # series: the server cannot get far ahead of a client that reads two parts and leaves.
    params = {"viewport": "2048,2048", "quality": "95", "order": "sequential"}
    with httpx.Client(timeout=30) as client, client.stream("GET", _series_url(loaded), params=params) as response:
        assert response.status_code == 200
        boundary = response.headers["content-type"].split("boundary=")[1].encode()
        received = b""
        for chunk in response.iter_raw():
            received += chunk
            # Two whole parts: the third delimiter (or the closing one) has arrived.
            if received.count(b"--" + boundary) >= 3:
                break
        assert received.count(b"Content-Location: ") >= 2
    rendered = _settled(root) - before
    assert 2 <= rendered <= SLICES // 4, rendered


def test_twenty_tiles_decode_the_frame_once(loaded: Loaded) -> None:
    root = loaded.server.root
    study, series, sop = loaded.large
    url = f"{loaded.server.url}/studies/{study}/series/{series}/instances/{sop}"
    descriptor = httpx.get(url + "/tiles", timeout=10).json()
    assert descriptor["levels"][0] == {"level": 0, "rows": 2048, "columns": 2048, "tiles_x": 8, "tiles_y": 8}
    assert descriptor["levels"][-1]["rows"] <= 256 and descriptor["tile_size"] == 256
    misses = metric(root, "tessera_cache_requests_total", tier="decoded", result="miss")

    async def tiles() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(
                client.get(url + "/rendered", params={"viewport": f"256,256,{x * 256},{y * 256},256,256"})
                for y in range(4) for x in range(5)))

    responses = asyncio.run(tiles())
    assert [r.status_code for r in responses] == [200] * 20
    assert all(r.content[:3] == b"\xff\xd8\xff" for r in responses)
    assert metric(root, "tessera_cache_requests_total", tier="decoded", result="miss") - misses == 1


def test_bad_order_is_400(loaded: Loaded) -> None:
    response = httpx.get(_series_url(loaded), params={"order": "backwards"}, timeout=10)
    assert response.status_code == 400
    assert "order" in response.json()["error"] and "interleaved" in response.json()["error"]


