"""Progressive series/study rendered streams and tiles through a tiny app: order of parts
(interleaved, sequential), Content-Location with the query string, 400 for a bad order, the
viewport on every part, study level, multi-frame instances, validators, a disconnect stopping the
renders (driven at the ASGI level, where the disconnect is exact), the tile descriptor and one decode
for many tiles of one frame."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import imagecodecs
import numpy as np
import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from archive.index import InstanceRecord
from archive.service import Archive, ArchiveConfig
from archive.synth import synth_series
from cache.prefetch import interleaved_order
from render.codecs.base import HTJ2K_LOSSLESS
from render.params import MEDIA_PNG, RenderParams, Viewport
from render.pipeline import render_pixels
from render.transform import resolve_region
from tests.conftest import DATA
from tests.dicomweb_helpers import part10, split_multipart
from web.app import create_app
from web.rendered import REVALIDATE
from web.settings import Settings
from web.tiles import is_tile_request, pyramid, tile_level

SLICES = 20
MULTIFRAME = "photometric_and_oddities/emri_small.dcm"  # 10 frames, 64x64


@dataclass
class Loaded:
    client: TestClient
    archive: Archive
    root: Path
    series: list[InstanceRecord]  # CT, instance order
    study: list[InstanceRecord]  # CT then MR series of the same study, as the index lists them
    multiframe: InstanceRecord
    large: InstanceRecord  # one 2048x2048 JPEG-LS frame


def _store(archive: Archive, datasets: Any) -> list[InstanceRecord]:
    results = archive.store([part10(ds) for ds in datasets])
    assert all(r.ok for r in results), [r.message for r in results]
    return [archive.index.instance(r.study_uid, r.series_uid, r.sop_instance_uid) for r in results]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    root = Path(tmp_path_factory.mktemp("stream"))
    archive = Archive(root, ArchiveConfig(durable=False))
    study_uid = "1.2.826.0.1.3680043.8.498.424242"
    _store(archive, synth_series(rows=64, columns=64, slices=SLICES, syntax="explicit", seed=7, study_uid=study_uid))
    _store(archive, synth_series(modality="MR", rows=64, columns=64, slices=3, syntax="rle", seed=8,
                                 study_uid=study_uid))
    [large] = _store(archive, synth_series(rows=2048, columns=2048, slices=1, syntax="jpegls", seed=9))
    outcome = archive.store([(DATA / MULTIFRAME).read_bytes()])[0]
    assert outcome.ok, outcome.message
    study = archive.index.instances(study_uid)
    series = [r for r in study if r.series_uid == study[0].series_uid]
    assert len(series) == SLICES and len(study) == SLICES + 3
    multiframe = archive.index.instance(outcome.study_uid, outcome.series_uid, outcome.sop_instance_uid)
    with TestClient(create_app(Settings(data=root, anonymous_role="admin"), archive), client=("127.0.0.1", 50000)) as client:
        yield Loaded(client, archive, root, series, study, multiframe, large)


def _series_url(r: InstanceRecord) -> str:
    return f"/dicomweb/studies/{r.study_uid}/series/{r.series_uid}/rendered"


def _frame_url(r: InstanceRecord, frame: int, query: str) -> str:
    return (f"http://testserver/dicomweb/studies/{r.study_uid}/series/{r.series_uid}/instances/{r.sop_uid}"
            f"/frames/{frame}/rendered{query}")


def _direct(archive: Archive, r: InstanceRecord, frame: int, params: RenderParams) -> np.ndarray:
    assert r.frame_info is not None
    return render_pixels(archive.frame(r, frame), r.frame_info, frame - 1, params)


# --- order and Content-Location ------------------------------------------------------------------


def test_sequential_parts_in_instance_order_with_content_locations(loaded: Loaded) -> None:
    response = loaded.client.get(_series_url(loaded.series[0]) + "?order=sequential&viewport=32,32&accept=image/png")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith('multipart/related; type="image/png"; boundary=')
    assert response.headers["cache-control"] == REVALIDATE
    parts = split_multipart(response)  # type: ignore[arg-type]
    assert len(parts) == SLICES
    for (headers, body), record in zip(parts, loaded.series):
        # ``order`` is not a parameter of the frame resource, so it is left out; the rest is kept as sent.
        assert headers["content-location"] == _frame_url(record, 1, "?viewport=32,32&accept=image/png")
        expected = _direct(loaded.archive, record, 1, RenderParams(None, Viewport(32, 32), media_type=MEDIA_PNG))
        assert np.array_equal(np.asarray(imagecodecs.png_decode(body)), expected)


def test_interleaved_is_the_default_order(loaded: Loaded) -> None:
    response = loaded.client.get(_series_url(loaded.series[0]), params={"quality": "80"})
    assert response.status_code == 200
    locations = [h["content-location"] for h, _ in split_multipart(response)]  # type: ignore[arg-type]
    expected = [_frame_url(loaded.series[i], 1, "?quality=80") for i in interleaved_order(SLICES)]
    assert locations == expected
    assert locations[:3] == [_frame_url(loaded.series[i], 1, "?quality=80") for i in (9, 0, 19)]


def test_explicit_interleaved_equals_default_but_tags_differ_by_order(loaded: Loaded) -> None:
    url = _series_url(loaded.series[0])
    default, interleaved = loaded.client.get(url), loaded.client.get(url + "?order=interleaved")
    sequential = loaded.client.get(url + "?order=sequential")
    assert [h["content-location"] for h, _ in split_multipart(default)] == [  # type: ignore[arg-type]
        h["content-location"] for h, _ in split_multipart(interleaved)]  # type: ignore[arg-type]
    assert default.headers["etag"] == interleaved.headers["etag"] != sequential.headers["etag"]
    assert default.content == interleaved.content  # equal tags, equal bytes
    again = loaded.client.get(url, headers={"If-None-Match": default.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize("value", ["random", "reverse", "INTERLEAVED,sequential"])
def test_bad_order_is_400_naming_it(loaded: Loaded, value: str) -> None:
    response = loaded.client.get(_series_url(loaded.series[0]), params={"order": value})
    assert response.status_code == 400
    message = response.json()["error"]
    assert message.startswith("order:") and value in message and "interleaved" in message and "sequential" in message


def test_order_is_not_a_parameter_of_the_frame_resource(loaded: Loaded) -> None:
    record = loaded.series[0]
    response = loaded.client.get(_frame_url(record, 1, "?order=sequential").removeprefix("http://testserver"))
    assert response.status_code == 400 and "'order'" in response.json()["error"]


def test_viewport_applies_to_every_part(loaded: Loaded) -> None:
    response = loaded.client.get(_series_url(loaded.series[0]), params={"viewport": "16,8"})
    parts = split_multipart(response)  # type: ignore[arg-type]
    assert len(parts) == SLICES
    for headers, body in parts:
        assert headers["content-type"] == "image/jpeg"
        assert imagecodecs.jpeg8_decode(body).shape == (8, 8)  # 64x64 fitted inside 16x8


def test_study_level_streams_every_series(loaded: Loaded) -> None:
    first = loaded.study[0]
    response = loaded.client.get(f"/dicomweb/studies/{first.study_uid}/rendered", params={"order": "sequential"})
    assert response.status_code == 200
    assert response.headers["cache-control"] == REVALIDATE
    locations = [h["content-location"] for h, _ in split_multipart(response)]  # type: ignore[arg-type]
    assert locations == [_frame_url(r, 1, "") for r in loaded.study]
    interleaved = loaded.client.get(f"/dicomweb/studies/{first.study_uid}/rendered")
    locations = [h["content-location"] for h, _ in split_multipart(interleaved)]  # type: ignore[arg-type]
    assert locations == [_frame_url(loaded.study[i], 1, "") for i in interleaved_order(len(loaded.study))]


def test_multiframe_instance_contributes_every_frame(loaded: Loaded) -> None:
    record = loaded.multiframe
    for order, expected in (("sequential", list(range(1, 11))), ("interleaved", [i + 1 for i in interleaved_order(10)])):
        response = loaded.client.get(_series_url(record), params={"order": order, "accept": "image/png"})
        parts = split_multipart(response)  # type: ignore[arg-type]
        assert [h["content-location"] for h, _ in parts] == [
            _frame_url(record, n, "?accept=image%2Fpng") for n in expected]
        for (_h, body), n in zip(parts, expected):
            direct = _direct(loaded.archive, record, n, RenderParams(media_type=MEDIA_PNG))
            assert np.array_equal(np.asarray(imagecodecs.png_decode(body)), direct)


def test_unknown_series_is_404(loaded: Loaded) -> None:
    response = loaded.client.get(f"/dicomweb/studies/{loaded.series[0].study_uid}/series/1.2.3/rendered")
    assert response.status_code == 404


# --- disconnect ----------------------------------------------------------------------------------


async def _stream_then_disconnect(app: Any, path: str, query: str, parts_before_close: int) -> int:
    """Drive one GET through the ASGI interface, report http.disconnect once ``parts_before_close``
    parts have been sent; return how many parts the app had sent by then."""
    disconnected = asyncio.Event()
    requested = False
    seen = 0

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal seen
        if message["type"] == "http.response.body":
            seen += message.get("body", b"").count(b"\r\nContent-Location: ")
            if seen >= parts_before_close:
                disconnected.set()

    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": query.encode(), "headers": [(b"host", b"testserver")],
        "server": ("testserver", 80), "client": ("127.0.0.1", 5000),
    }
    await app(scope, receive, send)
    return seen


def test_disconnect_stops_rendering(loaded: Loaded) -> None:
    # A runtime of its own: an empty cache and a render counter nothing else touches.
    app = create_app(Settings(data=loaded.root, anonymous_role="admin", cpu_threads=2, prefetch_neighbours=0), loaded.archive)
    rt = app.state.runtime

    async def run() -> tuple[int, int]:
        seen = await _stream_then_disconnect(app, _series_url(loaded.series[0]), "order=sequential&quality=61", 2)
        while rt.flight.in_flight:  # renders already in the CPU pool finish and land in the cache
            await asyncio.sleep(0.005)
        return seen, rt.flight.computes

    try:
        seen, computes = asyncio.run(run())
    finally:
        rt.shutdown()
    assert seen >= 2
    # Sent parts + the look-ahead (one per CPU thread) + the one started as the last part went out.
    assert computes <= seen + 3 < SLICES // 2, (seen, computes)


def test_a_series_stream_counts_as_warming_only_while_it_completes(loaded: Loaded) -> None:
    app = create_app(Settings(data=loaded.root, anonymous_role="admin", cpu_threads=2, prefetch_neighbours=0), loaded.archive)
    rt = app.state.runtime
    series = loaded.series[0].series_uid

    def warmed(quality: int) -> bool:
        return any(s == series and f"|{quality}|" in canonical for s, canonical, _m in rt.warmed)

    async def run() -> None:
        await _stream_then_disconnect(app, _series_url(loaded.series[0]), "order=sequential&quality=62", 2)
        await _stream_then_disconnect(app, _series_url(loaded.series[0]), "order=sequential&quality=63", SLICES + 1)

    try:
        asyncio.run(run())
    finally:
        rt.shutdown()
    assert not warmed(62)  # cut off after two parts: the series was not rendered
    assert warmed(63)  # streamed to the end


@pytest.mark.parametrize(("workers", "redis", "expected"), [
    (0, "", True), (1, "", True), (2, "", False), (2, "redis://127.0.0.1:6379/15", True)])
def test_whole_series_warming_only_where_every_request_can_use_it(
    tmp_path: Path, workers: int, redis: str, expected: bool
) -> None:
    settings = Settings(data=tmp_path, anonymous_role="admin", workers=workers, redis_url=redis, renditions=False)
    app = create_app(settings, Archive(tmp_path, ArchiveConfig(durable=False)))
    try:
        assert app.state.runtime.warm_series is expected
    finally:
        app.state.runtime.shutdown()
        app.state.runtime.cache.close()


# --- tiles ---------------------------------------------------------------------------------------


def _tiles_url(r: InstanceRecord) -> str:
    return f"/dicomweb/studies/{r.study_uid}/series/{r.series_uid}/instances/{r.sop_uid}/tiles"


def test_tile_descriptor(loaded: Loaded) -> None:
    response = loaded.client.get(_tiles_url(loaded.large))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "rows": 2048, "columns": 2048, "frames": 1, "tile_size": 256,
        "levels": [
            {"level": 0, "rows": 2048, "columns": 2048, "tiles_x": 8, "tiles_y": 8},
            {"level": 1, "rows": 1024, "columns": 1024, "tiles_x": 4, "tiles_y": 4},
            {"level": 2, "rows": 512, "columns": 512, "tiles_x": 2, "tiles_y": 2},
            {"level": 3, "rows": 256, "columns": 256, "tiles_x": 1, "tiles_y": 1},
        ],
    }
    etag = response.headers["etag"]
    assert loaded.client.get(_tiles_url(loaded.large), headers={"If-None-Match": etag}).status_code == 304
    small = loaded.client.get(_tiles_url(loaded.multiframe)).json()
    assert small["frames"] == 10 and small["levels"] == [
        {"level": 0, "rows": 64, "columns": 64, "tiles_x": 1, "tiles_y": 1}]
    record = loaded.series[0]
    missing = f"/dicomweb/studies/{record.study_uid}/series/{record.series_uid}/instances/1.2.3/tiles"
    assert loaded.client.get(missing).status_code == 404


def _decoded(result: str) -> float:
    return REGISTRY.get_sample_value("tessera_cache_requests_total", {"tier": "decoded", "result": result}) or 0.0


def test_twenty_concurrent_tiles_decode_the_frame_once(loaded: Loaded) -> None:
    app = create_app(Settings(data=loaded.root, anonymous_role="admin", prefetch_neighbours=0), loaded.archive)
    rt = app.state.runtime
    r = loaded.large
    base = f"/dicomweb/studies/{r.study_uid}/series/{r.series_uid}/instances/{r.sop_uid}/rendered"
    tiles = [(tx * 256, ty * 256) for ty in range(4) for tx in range(5)]  # 20 tiles of level 0

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 123))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await asyncio.gather(*(
                client.get(base, params={"viewport": f"256,256,{x},{y},256,256", "accept": "image/png"})
                for x, y in tiles))

    misses, hits = _decoded("miss"), _decoded("hit")
    try:
        responses = asyncio.run(run())
    finally:
        rt.shutdown()
    assert [resp.status_code for resp in responses] == [200] * 20
    assert _decoded("miss") - misses == 1  # one decode, shared by the tiles that arrived meanwhile
    assert _decoded("hit") - hits <= 19
    for (x, y), resp in list(zip(tiles, responses))[::7]:
        expected = _direct(loaded.archive, r, 1, RenderParams(None, Viewport(256, 256, x, y, 256, 256),
                                                               media_type=MEDIA_PNG))
        assert np.array_equal(np.asarray(imagecodecs.png_decode(resp.content)), expected)


def test_pyramid_and_the_documented_tile_viewport() -> None:
    assert pyramid(600, 1000) == [
        {"level": 0, "rows": 600, "columns": 1000, "tiles_x": 4, "tiles_y": 3},
        {"level": 1, "rows": 300, "columns": 500, "tiles_x": 2, "tiles_y": 2},
        {"level": 2, "rows": 150, "columns": 250, "tiles_x": 1, "tiles_y": 1},
    ]
    # The README's recipe for tile (k, tx, ty), here the corner tile (1, 1, 1) of 600x1000: its output
    # is the clipped region at half size, the scale of every other tile of the level.
    k, tx, ty, rows, columns = 1, 1, 1, 600, 1000
    s = 256 << k
    sx, sy = tx * s, ty * s
    vw, vh = -(-min(s, columns - sx) // (1 << k)), -(-min(s, rows - sy) // (1 << k))
    region = resolve_region(rows, columns, Viewport(vw, vh, sx, sy, s, s))
    assert (region.out_w, region.out_h) == (244, 44) == ((columns - sx) // 2, (rows - sy) // 2)


def test_htj2k_tiles_decode_only_their_level(loaded: Loaded) -> None:
    assert loaded.large.frame_info is not None
    htj2k = replace(loaded.large.frame_info, transfer_syntax_uid=HTJ2K_LOSSLESS)
    zoomed_out = RenderParams(None, Viewport(256, 256, 0, 0, 1024, 1024))  # a level-2 tile
    assert tile_level(htj2k, zoomed_out) == 2
    assert tile_level(loaded.large.frame_info, zoomed_out) == 0  # JPEG-LS always decodes full size
    assert is_tile_request(htj2k, zoomed_out)
    assert not is_tile_request(htj2k, RenderParams(None, Viewport(256, 256)))  # whole frame, not a tile
