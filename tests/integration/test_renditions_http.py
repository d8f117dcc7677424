"""Renditions through a real server on 127.0.0.1: made in the background after STOW, used for
rendering (the PNG is identical to rendering the original; a shrunk viewport decodes a reduced HTJ2K
resolution within a small RMS of it), never served by WADO-RS, removed by DELETE, visible in /metrics,
and resumed by a restarted server."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames

from archive.index import SQLiteIndex
from archive.synth import synth_series
from render.frameinfo import FrameInfo
from render.params import MEDIA_PNG, RenderParams, Viewport, Window
from render.pipeline import render_pixels
from tests.conftest import Server, start_server, stop_server, wait_for_renditions
from tests.dicomweb_helpers import split_multipart, stow


@dataclass(frozen=True)
class Stored:
    blob: bytes
    study: str
    series: str
    sop: str
    info: FrameInfo
    frame: bytes  # the original codestream

    def url(self, tail: str = "") -> str:
        return f"/studies/{self.study}/series/{self.series}/instances/{self.sop}{tail}"


def _instances(syntax: str, seed: int, slices: int) -> list[Stored]:
    out = []
    for ds in synth_series(rows=64, columns=64, slices=slices, syntax=syntax, seed=seed):
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        blob = buf.getvalue()
        ds = pydicom.dcmread(io.BytesIO(blob))
        ts = str(ds.file_meta.TransferSyntaxUID)
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        out.append(Stored(blob, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID),
                          FrameInfo.from_dataset(ds, ts), frame))
    return out


def _renditions(data: Path) -> dict[str, str]:
    """Original blob key -> rendition blob key, from the index."""
    with sqlite3.connect(data / "index.sqlite") as conn:
        return dict(conn.execute("SELECT blob_key, rendition_key FROM renditions WHERE status='done'"))


def _png(srv: Server, item: Stored, params: dict[str, str]) -> np.ndarray:
    response = httpx.get(srv.url + item.url("/frames/1/rendered"), params=params, headers={"Accept": MEDIA_PNG})
    assert response.status_code == 200, response.text
    return np.asarray(imagecodecs.png_decode(response.content))


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, list[Stored]]]:
    srv = start_server(tmp_path_factory.mktemp("renditions") / "data")
    try:
        items = _instances("j2k", seed=31, slices=3) + _instances("jpegls", seed=32, slices=2)
        assert stow(srv.url, [i.blob for i in items]).status_code == 200
        assert wait_for_renditions(srv.data) == 5
        yield srv, items
    finally:
        stop_server(srv)


def test_metrics_show_progress(loaded: tuple[Server, list[Stored]]) -> None:
    srv, _items = loaded
    text = httpx.get(srv.root + "/metrics").text
    assert 'tessera_renditions_total{outcome="done"} 5.0' in text
    assert "tessera_rendition_backlog 0.0" in text


@pytest.mark.parametrize("window", [None, Window(40.0, 400.0, "LINEAR"), Window(0.0, 1500.0, "SIGMOID")])
def test_png_is_identical_with_the_rendition(loaded: tuple[Server, list[Stored]], window: Window | None) -> None:
    srv, items = loaded
    query = {"window": f"{window.center!r},{window.width!r},{window.function.lower()}"} if window else {}
    for item in items:
        expected = render_pixels(item.frame, item.info, 0, RenderParams(window, media_type=MEDIA_PNG))
        assert np.array_equal(_png(srv, item, query), expected)


def test_shrunk_viewport_decodes_a_reduced_resolution_of_the_rendition(
    loaded: tuple[Server, list[Stored]],
) -> None:
    """A viewport 4x smaller decodes HTJ2K resolution level 2: the image equals the pipeline run on
    the rendition's codestream. It is not equal to the original's full decode averaged down (the
    wavelet low-pass is another, equally valid, downsampling filter), hence its own ETag."""
    srv, items = loaded
    index = SQLiteIndex(srv.data / "index.sqlite", durable=False)
    try:
        for item in items:
            record = index.instance(item.study, item.series, item.sop)
            assert record.rendition is not None and record.frame_info is not None
            span = record.rendition.frames[0]
            with open(srv.data / "objects" / record.rendition.key[:2] / record.rendition.key, "rb") as fh:
                fh.seek(span.offset)
                codestream = fh.read(span.length)
            info = replace(record.frame_info, transfer_syntax_uid=record.rendition.syntax)
            params = RenderParams(None, Viewport(16, 16), media_type=MEDIA_PNG)
            assert np.array_equal(_png(srv, item, {"viewport": "16,16"}), render_pixels(codestream, info, 0, params))
    finally:
        index.close()


def test_wado_returns_the_original_bytes(loaded: tuple[Server, list[Stored]]) -> None:
    srv, items = loaded
    for item in items:
        response = httpx.get(srv.url + item.url(), headers={
            "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
        assert response.status_code == 200
        [(_headers, body)] = split_multipart(response)
        assert body == item.blob
        frames = httpx.get(srv.url + item.url("/frames/1"), headers={"Accept": 'multipart/related; type="*/*"'})
        assert frames.status_code == 200
        [(_headers, payload)] = split_multipart(frames)
        assert payload == item.frame


def test_rendition_is_what_gets_decoded(tmp_path: Path) -> None:
    """With the original's file gone, rendering still works from the rendition (WADO does not)."""
    srv = start_server(tmp_path / "data")
    try:
        [item] = _instances("j2k", seed=33, slices=1)
        assert stow(srv.url, [item.blob]).status_code == 200
        wait_for_renditions(srv.data)
        [(original, _rendition)] = _renditions(srv.data).items()
        (srv.data / "objects" / original[:2] / original).unlink()
        expected = render_pixels(item.frame, item.info, 0, RenderParams(media_type=MEDIA_PNG))
        assert np.array_equal(_png(srv, item, {}), expected)
    finally:
        stop_server(srv)


def test_delete_removes_the_rendition(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data")
    try:
        items = _instances("jpeg-lossless", seed=34, slices=2)
        assert stow(srv.url, [i.blob for i in items]).status_code == 200
        assert wait_for_renditions(srv.data) == 2
        keys = _renditions(srv.data)
        assert httpx.delete(srv.url + items[0].url()).status_code == 204
        left = _renditions(srv.data)
        assert len(left) == 1
        [gone] = set(keys.values()) - set(left.values())
        assert not (srv.data / "objects" / gone[:2] / gone).exists()
        assert httpx.delete(f"{srv.url}/studies/{items[0].study}").status_code == 204
        assert _renditions(srv.data) == {}
        assert [p for p in (srv.data / "objects").rglob("*") if p.is_file()] == []
    finally:
        stop_server(srv)


def _etag(srv: Server, item: Stored, params: dict[str, str]) -> str:
    response = httpx.get(srv.url + item.url("/frames/1/rendered"), params=params, headers={"Accept": MEDIA_PNG})
    assert response.status_code == 200
    return response.headers["etag"]


def test_backlog_resumes_after_restart(tmp_path: Path) -> None:
    """Instances stored while renditions were off are transcoded by the next server. Full-size images
    keep their ETag (same bytes); reduced-resolution ones get a new one (other pixels)."""
    data = tmp_path / "data"
    srv = start_server(data, env={"TESSERA_RENDITIONS": "0"})
    items = _instances("j2k", seed=35, slices=2)
    try:
        assert stow(srv.url, [i.blob for i in items]).status_code == 200
        assert _renditions(data) == {}
        before = (_etag(srv, items[1], {}), _etag(srv, items[1], {"viewport": "16,16"}))
    finally:
        stop_server(srv)
    restarted = start_server(data)
    try:
        assert wait_for_renditions(data) == 2
        expected = render_pixels(items[1].frame, items[1].info, 0, RenderParams(media_type=MEDIA_PNG))
        assert np.array_equal(_png(restarted, items[1], {}), expected)
        assert _etag(restarted, items[1], {}) == before[0]
        assert _etag(restarted, items[1], {"viewport": "16,16"}) != before[1]
    finally:
        stop_server(restarted)


def test_tiles_of_an_instance_with_a_rendition_decode_the_rendition(tmp_path: Path) -> None:
    from tests.integration.test_cache_http import metric

    datasets = list(synth_series(modality="CT", rows=256, columns=256, slices=1, syntax="j2k", seed=11))
    blob = io.BytesIO()
    datasets[0].save_as(blob, enforce_file_format=True)
    server = start_server(tmp_path / "data")
    try:
        assert stow(server.url, [blob.getvalue()]).status_code == 200
        assert wait_for_renditions(tmp_path / "data") == 1
        ds = datasets[0]
        url = (
            f"{server.url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
            f"{ds.SOPInstanceUID}/rendered?viewport=64,64,0,0,128,128"
        )
        response = httpx.get(url)
        assert response.status_code == 200
        rendition = metric(server.root, "tessera_render_seconds_count", stage="decode",
                           transfer_syntax="1.2.840.10008.1.2.4.202")
        original = metric(server.root, "tessera_render_seconds_count", stage="decode",
                          transfer_syntax="1.2.840.10008.1.2.4.90")
        assert (rendition, original) == (1, 0)
    finally:
        stop_server(server)


def test_replaced_and_deleted_instances_are_never_served_from_remembered_records(tmp_path: Path) -> None:
    """Records are kept in memory between requests (archive/records.py): a replacement stored through
    another worker process and a delete must still show at once."""
    srv = start_server(tmp_path / "data", env={"TESSERA_OVERWRITE": "1", "TESSERA_RENDITIONS": "0"}, workers=2)
    try:
        first = _instances("jpeg-lossless", seed=35, slices=2)
        assert stow(srv.url, [i.blob for i in first]).status_code == 200
        for _ in range(4):  # both worker processes remember the series
            assert np.array_equal(_png(srv, first[0], {}), _png(srv, first[0], {}))
        before = {_etag(srv, first[0], {}) for _ in range(4)}
        # Same UIDs, other pixels: seed changes the noise only.
        other = [replace(i, blob=_with_uids(b.blob, i)) for i, b in zip(first, _instances("jpeg-lossless", seed=36, slices=2))]
        assert stow(srv.url, [i.blob for i in other]).status_code == 200
        after = {_etag(srv, first[0], {}) for _ in range(4)}
        assert before.isdisjoint(after)
        assert httpx.delete(srv.url + first[0].url()).status_code == 204
        for _ in range(4):
            response = httpx.get(srv.url + first[0].url("/frames/1/rendered"))
            assert response.status_code == 404, response.text
    finally:
        stop_server(srv)


def _with_uids(blob: bytes, like: Stored) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(blob))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = like.study, like.series, like.sop
    ds.file_meta.MediaStorageSOPInstanceUID = like.sop
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()
