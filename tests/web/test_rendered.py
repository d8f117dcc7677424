"""Rendered resources and thumbnails through a tiny app (PS3.18 8.3.5, Sup 203): status codes,
Content-Type, validators (ETag, 304, Cache-Control), 400s naming the parameter, 406, multipart
with Content-Location, thumbnail sizes."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from starlette.testclient import TestClient

from archive.index import InstanceRecord
from archive.service import Archive, ArchiveConfig
from archive.synth import synth_series
from render.params import MEDIA_PNG, RenderParams, Viewport, parse_window
from render.pipeline import render_pixels
from tests.conftest import DATA
from tests.dicomweb_helpers import part10, split_multipart
from web.app import create_app
from web.rendered import IMMUTABLE, REVALIDATE
from web.settings import Settings

SYNTAXES = ("explicit", "rle", "jpegls", "j2k", "htj2k")
CORPUS = (
    "photometric_and_oddities/emri_small.dcm",  # 10 frames, 64x64
    "photometric_and_oddities/US-PAL-8-10x-echo.dcm",  # palette colour, 10 frames, 430x600
    "photometric_and_oddities/CT_small.dcm",
)


@dataclass
class Loaded:
    client: TestClient
    archive: Archive
    series: dict[str, list[InstanceRecord]]  # syntax -> records in instance order
    corpus: dict[str, InstanceRecord]


VIDEO_TS = "1.2.840.10008.1.2.4.102"  # MPEG-4 AVC/H.264: a video, not a frame Tessera renders


def _video_instance() -> bytes:
    ds = next(iter(synth_series(rows=64, columns=64, slices=1, syntax="explicit", seed=99)))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(VIDEO_TS)
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(100)])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return part10(ds)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    root = Path(tmp_path_factory.mktemp("rendered"))
    archive = Archive(root, ArchiveConfig(durable=False))
    series = {}
    for seed, syntax in enumerate(SYNTAXES, start=1):
        # One seed per syntax: lossless syntaxes of one seed share SOP Instance UIDs.
        blobs = [part10(ds) for ds in synth_series(rows=96, columns=160, slices=5, syntax=syntax, seed=seed)]
        assert all(r.ok for r in archive.store(blobs))
        study = pydicom.dcmread(io.BytesIO(blobs[0]), stop_before_pixels=True).StudyInstanceUID
        series[syntax] = archive.index.instances(study)
    video = _video_instance()
    assert archive.store([video])[0].ok
    corpus = {}
    for name in CORPUS:
        results = archive.store([(DATA / name).read_bytes()])
        assert results[0].ok, results[0].message
        corpus[name] = archive.index.instance(results[0].study_uid, results[0].series_uid, results[0].sop_instance_uid)
    with TestClient(create_app(Settings(data=root, anonymous_role="admin"), archive), client=("127.0.0.1", 50000)) as client:
        yield Loaded(client, archive, series, corpus)


def _url(r: InstanceRecord, tail: str = "") -> str:
    return f"/dicomweb/studies/{r.study_uid}/series/{r.series_uid}/instances/{r.sop_uid}{tail}"


def _png_pixels(content: bytes) -> np.ndarray:
    return np.asarray(imagecodecs.png_decode(content))


def _direct(archive: Archive, r: InstanceRecord, frame: int, params: RenderParams) -> np.ndarray:
    assert r.frame_info is not None
    return render_pixels(archive.frame(r, frame), r.frame_info, frame - 1, params)


# --- happy paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_instance_rendered_is_jpeg_by_default_with_validators(loaded: Loaded, syntax: str) -> None:
    record = loaded.series[syntax][0]
    response = loaded.client.get(_url(record, "/rendered"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content[:3] == b"\xff\xd8\xff"
    assert response.headers["cache-control"] == IMMUTABLE
    assert response.headers["etag"].startswith('"') and len(response.headers["etag"]) == 34
    assert "app;dur=" in response.headers["server-timing"]
    assert imagecodecs.jpeg8_decode(response.content).shape == (96, 160)


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_png_equals_the_pipeline(loaded: Loaded, syntax: str) -> None:
    record = loaded.series[syntax][2]
    response = loaded.client.get(_url(record, "/frames/1/rendered"), params={"window": "40,400,linear"},
                                 headers={"Accept": "image/png"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    expected = _direct(loaded.archive, record, 1, RenderParams(parse_window("40,400,linear"), media_type=MEDIA_PNG))
    assert np.array_equal(_png_pixels(response.content), expected)


def _stored_png_rows(content: bytes) -> list[bytes]:
    """The scanlines of a PNG whose IDAT is zlib stored blocks (level 0), read without inflating,
    as a client of ``compression=none`` may: each row is a filter byte, then the pixels."""
    assert content[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, channels = 8, b"", 0, 0
    while pos < len(content):
        length = int.from_bytes(content[pos:pos + 4], "big")
        kind, data = content[pos + 4:pos + 8], content[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, channels = int.from_bytes(data[:4], "big"), {0: 1, 2: 3}[data[9]]
            assert data[8] == 8 and data[12] == 0  # 8 bits, not interlaced
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    raw, q = b"", 2  # after the zlib header
    while True:
        header, size = idat[q], int.from_bytes(idat[q + 1:q + 3], "little")
        assert header & 0b110 == 0, "a compressed deflate block"
        raw += idat[q + 5:q + 5 + size]
        q += 5 + size
        if header & 1:
            break
    stride = 1 + width * channels
    return [raw[i:i + stride] for i in range(0, len(raw), stride)]


@pytest.mark.parametrize("name", ["photometric_and_oddities/CT_small.dcm", "photometric_and_oddities/US-PAL-8-10x-echo.dcm"])
def test_png_without_compression_is_stored_unfiltered_with_the_same_pixels(loaded: Loaded, name: str) -> None:
    record = loaded.corpus[name]
    url = _url(record, "/frames/1/rendered")
    packed = loaded.client.get(url, params={"accept": "image/png"})
    stored = loaded.client.get(url, params={"accept": "image/png", "compression": "none"})
    assert stored.status_code == 200 and stored.headers["content-type"] == "image/png"
    pixels = _png_pixels(packed.content)
    assert np.array_equal(_png_pixels(stored.content), pixels)
    rows = _stored_png_rows(stored.content)
    assert all(row[0] == 0 for row in rows)  # filter None: the bytes are the pixels
    assert np.array_equal(np.frombuffer(b"".join(row[1:] for row in rows), np.uint8).reshape(pixels.shape), pixels)
    assert len(stored.content) > len(packed.content)
    assert stored.headers["etag"] != packed.headers["etag"]
    # JPEG has nothing to store uncompressed: the parameter changes neither the bytes nor the tag.
    jpeg = loaded.client.get(url)
    same = loaded.client.get(url, params={"compression": "none"})
    assert same.content == jpeg.content and same.headers["etag"] == jpeg.headers["etag"]


def test_series_stream_without_compression(loaded: Loaded) -> None:
    record = loaded.series["j2k"][0]
    url = f"/dicomweb/studies/{record.study_uid}/series/{record.series_uid}/rendered"
    response = loaded.client.get(url, params={"accept": "image/png", "compression": "none", "order": "sequential"})
    assert response.status_code == 200
    parts = split_multipart(response)
    assert len(parts) == len(loaded.series["j2k"])
    for (headers, body), r in zip(parts, loaded.series["j2k"], strict=True):
        assert "compression=none" in headers["content-location"] and "order" not in headers["content-location"]
        assert all(row[0] == 0 for row in _stored_png_rows(body))
        assert np.array_equal(_png_pixels(body), _direct(loaded.archive, r, 1, RenderParams(media_type=MEDIA_PNG)))


def test_accept_query_parameter_wins_over_header(loaded: Loaded) -> None:
    record = loaded.series["explicit"][0]
    response = loaded.client.get(_url(record, "/rendered"), params={"accept": "image/png"},
                                 headers={"Accept": "image/jpeg"})
    assert response.headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    "accept, expected",
    [("*/*", "image/jpeg"), ("image/*", "image/jpeg"), ("image/png;q=0.9, image/jpeg;q=0.5", "image/png"),
     ('multipart/related; type="image/png"', "image/png"), ("image/gif, image/png;q=0.1", "image/png")],
)
def test_accept_negotiation(loaded: Loaded, accept: str, expected: str) -> None:
    response = loaded.client.get(_url(loaded.series["explicit"][0], "/rendered"), headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"] == expected


def test_viewport_sizes_the_image(loaded: Loaded) -> None:
    response = loaded.client.get(_url(loaded.series["j2k"][0], "/rendered"), params={"viewport": "80,80"},
                                 headers={"Accept": "image/png"})
    assert _png_pixels(response.content).shape == (48, 80)  # 96x160 fitted in 80x80, aspect kept


def test_iccprofile_no_is_accepted(loaded: Loaded) -> None:
    response = loaded.client.get(_url(loaded.series["explicit"][0], "/rendered"), params={"iccprofile": "no"})
    assert response.status_code == 200


# --- validators ----------------------------------------------------------------------------------


def test_if_none_match_gives_304_without_reading(loaded: Loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    record = loaded.series["jpegls"][1]
    first = loaded.client.get(_url(record, "/rendered"))
    etag = first.headers["etag"]

    def no_read(*_args: object) -> bytes:
        raise AssertionError("a 304 must not read (or decode) the frame")

    monkeypatch.setattr(loaded.archive, "frame", no_read)
    again = loaded.client.get(_url(record, "/rendered"), headers={"If-None-Match": f'"other", W/{etag}'})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == IMMUTABLE


def test_etag_depends_on_parameters_media_type_and_frame(loaded: Loaded) -> None:
    record = loaded.corpus["photometric_and_oddities/emri_small.dcm"]
    tags = {
        loaded.client.get(_url(record, tail), params=params, headers=headers).headers["etag"]
        for tail, params, headers in [
            ("/frames/1/rendered", {}, {}),
            ("/frames/2/rendered", {}, {}),
            ("/frames/1/rendered", {"quality": "50"}, {}),
            ("/frames/1/rendered", {"window": "100,200,sigmoid"}, {}),
            ("/frames/1/rendered", {"viewport": "32,32"}, {}),
            ("/frames/1/rendered", {}, {"Accept": "image/png"}),
        ]
    }
    assert len(tags) == 6
    # Instance level is frame 1 with the same parameters: the same representation, the same tag.
    same = loaded.client.get(_url(record, "/rendered")).headers["etag"]
    assert same == loaded.client.get(_url(record, "/frames/1/rendered")).headers["etag"]


def test_etag_is_different_across_instances_with_equal_pixels(loaded: Loaded) -> None:
    a = loaded.client.get(_url(loaded.series["explicit"][0], "/rendered")).headers["etag"]
    b = loaded.client.get(_url(loaded.series["rle"][0], "/rendered")).headers["etag"]
    assert a != b


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, needle",
    [
        ({"window": "40,0,linear"}, "window: width must be >= 1 for linear, got 0"),
        ({"window": "40,400"}, "window: expected center,width,function"),
        ({"window": "40,400,cubic"}, "window: function must be one of"),
        ({"viewport": "0,10"}, "viewport: vw and vh must be >= 1"),
        ({"viewport": "10,10,500,0,,"}, "viewport: sx,sy 500,0 is outside"),
        ({"quality": "101"}, "quality: must be an integer from 1 to 100, got 101"),
        ({"quality": "high"}, "quality: 'high'"),
        ({"annotation": "patient"}, "annotation: 'patient' is not supported"),
        ({"iccprofile": "srgb"}, "iccprofile: 'srgb' is not supported"),
        ({"compression": "zstd"}, "compression: 'zstd' is not supported: must be one of default, none"),
        ({"frobnicate": "1"}, "query parameter 'frobnicate' is not supported"),
    ],
)
def test_bad_parameters_are_400_naming_them(loaded: Loaded, params: dict[str, str], needle: str) -> None:
    response = loaded.client.get(_url(loaded.series["explicit"][0], "/rendered"), params=params)
    assert response.status_code == 400
    assert needle in response.json()["error"]


def test_repeated_parameter_is_400(loaded: Loaded) -> None:
    response = loaded.client.get(_url(loaded.series["explicit"][0], "/rendered?quality=5&quality=6"))
    assert response.status_code == 400
    assert "quality: given 2 times" in response.json()["error"]


@pytest.mark.parametrize("frames", ["0", "1,x", "-1", "1,,2"])
def test_bad_frame_list_is_400(loaded: Loaded, frames: str) -> None:
    response = loaded.client.get(_url(loaded.series["explicit"][0], f"/frames/{frames}/rendered"))
    assert response.status_code == 400
    assert "frame list" in response.json()["error"]


def test_frame_past_the_last_is_404(loaded: Loaded) -> None:
    record = loaded.corpus["photometric_and_oddities/emri_small.dcm"]
    response = loaded.client.get(_url(record, "/frames/11/rendered"))
    assert response.status_code == 404
    assert "frame 11" in response.json()["error"] and "10 frames" in response.json()["error"]


def test_bad_uid_is_400(loaded: Loaded) -> None:
    response = loaded.client.get("/dicomweb/studies/1.2.x/series/1.2/instances/1.3/rendered")
    assert response.status_code == 400
    assert "StudyInstanceUID" in response.json()["error"]


def test_unknown_instance_is_404(loaded: Loaded) -> None:
    record = loaded.series["explicit"][0]
    response = loaded.client.get(f"/dicomweb/studies/{record.study_uid}/series/{record.series_uid}/instances/1.2.3/rendered")
    assert response.status_code == 404


@pytest.mark.parametrize("accept", ["image/gif", "application/dicom", "video/mp4"])
def test_unrenderable_media_type_is_406(loaded: Loaded, accept: str) -> None:
    response = loaded.client.get(_url(loaded.series["explicit"][0], "/rendered"), headers={"Accept": accept})
    assert response.status_code == 406
    assert "image/jpeg" in response.json()["error"] and "image/png" in response.json()["error"]


def test_video_transfer_syntax_is_406(loaded: Loaded) -> None:
    ds = pydicom.dcmread(io.BytesIO(_video_instance()), stop_before_pixels=True)
    for tail in ("/rendered", "/thumbnail", "/frames/1/rendered"):
        response = loaded.client.get(
            f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}{tail}"
        )
        assert response.status_code == 406
        assert VIDEO_TS in response.json()["error"]
    response = loaded.client.get(f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/rendered")
    assert response.status_code == 406


# --- multipart -----------------------------------------------------------------------------------


def test_series_rendered_is_multipart_with_content_locations(loaded: Loaded) -> None:
    records = loaded.series["htj2k"]
    first = records[0]
    response = loaded.client.get(f"/dicomweb/studies/{first.study_uid}/series/{first.series_uid}/rendered",
                                 params={"accept": "image/png", "viewport": "80,80", "order": "sequential"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith('multipart/related; type="image/png"; boundary=')
    assert response.headers["cache-control"] == REVALIDATE
    parts = split_multipart(response)  # type: ignore[arg-type]
    assert len(parts) == len(records)
    for (headers, body), record in zip(parts, records):
        assert headers["content-type"] == "image/png"
        assert headers["content-location"] == (
            f"http://testserver/dicomweb/studies/{record.study_uid}/series/{record.series_uid}/instances/"
            f"{record.sop_uid}/frames/1/rendered?accept=image%2Fpng&viewport=80%2C80"
        )
        expected = _direct(loaded.archive, record, 1, RenderParams(None, Viewport(80, 80), media_type=MEDIA_PNG))
        assert np.array_equal(_png_pixels(body), expected)


def test_series_rendered_304_and_deterministic_bytes(loaded: Loaded) -> None:
    first = loaded.series["rle"][0]
    url = f"/dicomweb/studies/{first.study_uid}/series/{first.series_uid}/rendered"
    a, b = loaded.client.get(url), loaded.client.get(url)
    assert a.headers["etag"] == b.headers["etag"]
    assert a.content == b.content  # a strong validator: equal tags, equal bytes
    assert loaded.client.get(url, headers={"If-None-Match": a.headers["etag"]}).status_code == 304


def test_study_rendered_covers_every_instance(loaded: Loaded) -> None:
    first = loaded.series["explicit"][0]
    response = loaded.client.get(f"/dicomweb/studies/{first.study_uid}/rendered")
    assert len(split_multipart(response)) == 5  # type: ignore[arg-type]


def test_frame_list_rendered_is_multipart_in_order(loaded: Loaded) -> None:
    record = loaded.corpus["photometric_and_oddities/emri_small.dcm"]
    response = loaded.client.get(_url(record, "/frames/3,1,10/rendered"), headers={"Accept": "image/png"})
    parts = split_multipart(response)  # type: ignore[arg-type]
    assert [h["content-location"].split("/frames/")[1] for h, _ in parts] == ["3/rendered", "1/rendered",
                                                                             "10/rendered"]
    for (_h, body), n in zip(parts, (3, 1, 10)):
        assert np.array_equal(_png_pixels(body), _direct(loaded.archive, record, n, RenderParams(media_type=MEDIA_PNG)))


# --- thumbnails ----------------------------------------------------------------------------------


def test_instance_thumbnail_fits_128_and_is_the_middle_frame(loaded: Loaded) -> None:
    record = loaded.corpus["photometric_and_oddities/US-PAL-8-10x-echo.dcm"]  # 430x600, 10 frames
    response = loaded.client.get(_url(record, "/thumbnail"), headers={"Accept": "image/png"})
    assert response.status_code == 200
    pixels = _png_pixels(response.content)
    assert pixels.shape == (92, 128, 3)
    expected = _direct(loaded.archive, record, 5, RenderParams(None, Viewport(128, 128), media_type=MEDIA_PNG))
    assert np.array_equal(pixels, expected)
    assert response.headers["cache-control"] == IMMUTABLE


def test_small_images_are_not_enlarged(loaded: Loaded) -> None:
    record = loaded.corpus["photometric_and_oddities/emri_small.dcm"]  # 64x64
    response = loaded.client.get(_url(record, "/thumbnail"))
    assert imagecodecs.jpeg8_decode(response.content).shape == (64, 64)


def test_thumbnail_viewport(loaded: Loaded) -> None:
    record = loaded.series["j2k"][0]
    response = loaded.client.get(_url(record, "/thumbnail"), params={"viewport": "40,40"})
    assert response.headers["content-type"] == "image/jpeg"
    assert imagecodecs.jpeg8_decode(response.content).shape == (24, 40)


def test_series_thumbnail_is_the_middle_instance(loaded: Loaded) -> None:
    records = loaded.series["jpegls"]
    middle = records[2]
    first = records[0]
    response = loaded.client.get(f"/dicomweb/studies/{first.study_uid}/series/{first.series_uid}/thumbnail",
                                 headers={"Accept": "image/png"})
    assert response.headers["cache-control"] == REVALIDATE
    direct = loaded.client.get(_url(middle, "/thumbnail"), headers={"Accept": "image/png"})
    assert response.content == direct.content
    assert response.headers["etag"] == direct.headers["etag"]
    study = loaded.client.get(f"/dicomweb/studies/{first.study_uid}/thumbnail", headers={"Accept": "image/png"})
    assert study.content == direct.content
    assert _png_pixels(response.content).shape == (77, 128)


def test_frame_thumbnail_takes_one_frame(loaded: Loaded) -> None:
    record = loaded.corpus["photometric_and_oddities/emri_small.dcm"]
    assert loaded.client.get(_url(record, "/frames/4/thumbnail")).status_code == 200
    response = loaded.client.get(_url(record, "/frames/1,2/thumbnail"))
    assert response.status_code == 400
    assert "one frame" in response.json()["error"]
    assert loaded.client.get(_url(record, "/frames/12/thumbnail")).status_code == 404
