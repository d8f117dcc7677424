"""Rendered resources from a real server on 127.0.0.1, golden against the pipeline called directly.

Every renderable file of the public corpus and a synthetic series in every transfer syntax: the PNG
served over HTTP decodes exactly to ``render.pipeline.render_pixels`` on the same stored frame with
the same parameters (the file's default window, and an explicit window with each VOI LUT function);
the JPEG is within ``JPEG_RMS_BOUND_GREY`` (``_COLOUR``) of it. Files sharing a SOP Instance UID (one image stored in
several syntaxes) go to separate servers, so every file is checked.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import imagecodecs
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.encaps import generate_frames

from archive.synth import SYNTAX_CHOICES, synth_series
from render.codecs.base import NATIVE_SYNTAXES
from render.frameinfo import FrameInfo
from render.params import MEDIA_PNG, RenderParams, Window
from render.pipeline import render_pixels
from tests.conftest import BROKEN, DATA, Server, corpus, start_server, stop_server
from tests.dicomweb_helpers import stow
from tests.render.corpus import load

#: JPEG (q90, baseline, 4:4:4 colour) against the exact pixels it was encoded from, in 8-bit levels.
#: Measured maxima: grey 3.6 (64x64 MR), colour 7.5 (OT-PAL-8-face: a dithered palette image, all edges).
JPEG_RMS_BOUND_GREY = 4.0
JPEG_RMS_BOUND_COLOUR = 8.0


@dataclass(frozen=True)
class Case:
    name: str
    blob: bytes
    study: str
    series: str
    sop: str
    info: FrameInfo
    frames: tuple[bytes, ...]  # the stored bytes of each frame, as the pipeline takes them


def _corpus_case(name: str) -> Case:
    loaded = load(name)
    ds = loaded.ds
    return Case(name, (DATA / name).read_bytes(), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                str(ds.SOPInstanceUID), loaded.info, tuple(loaded.frames))


def _synth_case(syntax: str, seed: int) -> Case:
    ds = next(iter(synth_series(rows=64, columns=96, slices=1, syntax=syntax, seed=seed)))
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    blob = buf.getvalue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(blob))
    ts = str(ds.file_meta.TransferSyntaxUID)
    info = FrameInfo.from_dataset(ds, ts)
    frame = bytes(ds.PixelData) if ts in NATIVE_SYNTAXES else next(generate_frames(ds.PixelData, number_of_frames=1))
    return Case(f"synth-{syntax}", blob, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                str(ds.SOPInstanceUID), info, (frame,))


CASES = [_corpus_case(f.name) for f in corpus() if f.name not in BROKEN] + [
    _synth_case(syntax, seed) for seed, syntax in enumerate(SYNTAX_CHOICES, start=1)
]


def _groups(cases: list[Case]) -> list[list[Case]]:
    """Cases split so no group holds a SOP Instance UID twice (first group that has room)."""
    groups: list[tuple[set[str], list[Case]]] = []
    for case in cases:
        for sops, members in groups:
            if case.sop not in sops:
                sops.add(case.sop)
                members.append(case)
                break
        else:
            groups.append(({case.sop}, [case]))
    return [members for _sops, members in groups]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """Case name -> the server holding it."""
    started: list[Server] = []
    by_case: dict[str, Server] = {}
    try:
        for i, group in enumerate(_groups(CASES)):
            srv = start_server(tmp_path_factory.mktemp(f"rendered-{i}") / "data")
            started.append(srv)
            for start in range(0, len(group), 10):
                response = stow(srv.url, [c.blob for c in group[start : start + 10]])
                assert response.status_code == 200, response.text
            by_case.update({c.name: srv for c in group})
        yield by_case
    finally:
        for srv in started:
            stop_server(srv)


def _explicit_window(info: FrameInfo, function: str) -> Window:
    """A window that spreads the data: the file's own first window, else the middle of the stored range."""
    if info.windows:
        w = info.windows[0]
        return Window(w.center, max(w.width, 2.0), function)
    full = 1 << info.bits_stored
    low = -(full // 2) if info.pixel_representation else 0
    slope, intercept = info.rescale_slope, info.rescale_intercept
    return Window(intercept + slope * (low + full / 2), max(2.0, abs(slope) * full / 2), function)


def _query(window: Window | None) -> dict[str, str]:
    if window is None:
        return {}
    fn = window.function.lower().replace("_", "-")
    return {"window": f"{window.center!r},{window.width!r},{fn}"}


def _get(srv: Server, case: Case, frame: int, params: dict[str, str], accept: str) -> httpx.Response:
    url = f"{srv.url}/studies/{case.study}/series/{case.series}/instances/{case.sop}/frames/{frame}/rendered"
    response = httpx.get(url, params=params, headers={"Accept": accept}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == accept
    return response


FUNCTIONS = [None, "LINEAR", "LINEAR_EXACT", "SIGMOID"]


@pytest.mark.parametrize("function", FUNCTIONS, ids=["default", "linear", "linear-exact", "sigmoid"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_png_over_http_equals_the_pipeline(servers: dict[str, Server], case: Case, function: str | None) -> None:
    window = None if function is None or case.info.is_color else _explicit_window(case.info, function)
    frames = [1, case.info.number_of_frames] if case.info.number_of_frames > 1 else [1]
    for frame in frames:
        response = _get(servers[case.name], case, frame, _query(window), MEDIA_PNG)
        got = np.asarray(imagecodecs.png_decode(response.content))
        expected = render_pixels(case.frames[frame - 1], case.info, frame - 1, RenderParams(window, media_type=MEDIA_PNG))
        assert got.shape == expected.shape
        assert np.array_equal(got, expected), f"frame {frame}: {int((got != expected).sum())} pixels differ"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_jpeg_within_rms_of_the_exact_pixels(servers: dict[str, Server], case: Case) -> None:
    response = _get(servers[case.name], case, 1, {}, "image/jpeg")
    got = np.asarray(imagecodecs.jpeg8_decode(response.content), dtype=np.float64)
    expected = render_pixels(case.frames[0], case.info, 0, RenderParams()).astype(np.float64)
    assert got.shape == expected.shape
    rms = float(np.sqrt(np.mean((got - expected) ** 2)))
    bound = JPEG_RMS_BOUND_COLOUR if case.info.is_color else JPEG_RMS_BOUND_GREY
    assert rms <= bound, f"RMS {rms:.2f}"


def test_dicomweb_client_retrieves_rendered_instance(servers: dict[str, Server]) -> None:
    case = next(c for c in CASES if c.name == "synth-j2k")
    client = DICOMwebClient(servers[case.name].url)
    png = client.retrieve_instance_rendered(case.study, case.series, case.sop, media_types=("image/png",))
    expected = render_pixels(case.frames[0], case.info, 0, RenderParams(media_type=MEDIA_PNG))
    assert np.array_equal(np.asarray(imagecodecs.png_decode(png)), expected)


def test_304_and_cache_headers_over_http(servers: dict[str, Server]) -> None:
    case = next(c for c in CASES if c.name == "synth-htj2k")
    srv = servers[case.name]
    url = f"{srv.url}/studies/{case.study}/series/{case.series}/instances/{case.sop}/rendered"
    first = httpx.get(url)
    assert first.headers["cache-control"] == "private, max-age=31536000, immutable"
    again = httpx.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.headers["etag"] == first.headers["etag"]


def test_every_corpus_file_is_covered() -> None:
    names = {c.name for c in CASES}
    expected = {f.name for f in corpus()} - set(BROKEN)
    assert expected <= names
    assert "photometric_and_oddities/1.2.840.10008.1.2.4.51.dcm" in names  # 12-bit JPEG, imagecodecs decodes it
    assert Path(DATA / "MANIFEST.csv").exists()
