"""Browser tests of the viewer (issue 6): Debian's Chromium driven by Playwright's sync API, against a
real Tessera server on 127.0.0.1 holding small synthetic studies made here.

Playwright's own browser download does not work in this environment, so the tests launch
``/usr/bin/chromium``. Without it (or without playwright) they skip locally and fail in CI (``CI=true``),
like the Redis tests. One server and one browser per module keep the suite fast.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest

from archive.synth import synth_series
from tests.conftest import IN_CI, Server, start_server, stop_server
from tests.dicomweb_helpers import part10, stow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# PixelSpacing of archive.synth's series: a 350 mm field of view over the larger side.
FOV_MM = 350.0


def _missing(reason: str) -> None:
    # Skipping is not passing: like a missing Redis, a missing browser fails the run, saying how to
    # get it (.ci/run installs it).
    where = " in CI" if IN_CI else ""
    pytest.fail(f"{reason}{where}: apt-get install chromium; pip install playwright", pytrace=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        _missing(f"Chromium not found at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def dicom_bytes(datasets: Any) -> list[bytes]:
    return [part10(ds) for ds in datasets]


@dataclass(frozen=True)
class SeriesRef:
    study: str
    series: str
    sops: list[str]
    rows: int
    columns: int


@dataclass(frozen=True)
class ViewerData:
    ct: SeriesRef  # 24-slice 512x512 CT, "VIEWER^ALPHA"
    mr: SeriesRef  # 12-slice 256x256 MR in the same study
    other: SeriesRef  # 10-slice MR study of "VIEWER^BRAVO"
    large: SeriesRef  # one 2048x2048 CT slice (tiles at high zoom)
    nospacing: SeriesRef  # 3 CT slices without PixelSpacing


def _load(url: str, datasets: list[pydicom.Dataset], headers: dict[str, str] | None) -> SeriesRef:
    blobs = dicom_bytes(datasets)
    r = stow(url, blobs, headers=headers)
    assert r.status_code == 200, r.text
    first = datasets[0]
    return SeriesRef(str(first.StudyInstanceUID), str(first.SeriesInstanceUID),
                     [str(d.SOPInstanceUID) for d in datasets], int(first.Rows), int(first.Columns))


def load_viewer_data(url: str, headers: dict[str, str] | None = None) -> ViewerData:
    ct = _load(url, list(synth_series(modality="CT", rows=512, columns=512, slices=24, seed=0,
                                      patient_name="VIEWER^ALPHA", patient_id="VWR-A")), headers)
    mr = _load(url, list(synth_series(modality="MR", rows=256, columns=256, slices=12, seed=0,
                                      patient_name="VIEWER^ALPHA", patient_id="VWR-A", study_uid=ct.study)), headers)
    other = _load(url, list(synth_series(modality="MR", rows=256, columns=256, slices=10, seed=3,
                                         patient_name="VIEWER^BRAVO", patient_id="VWR-B")), headers)
    large = _load(url, list(synth_series(modality="CT", rows=2048, columns=2048, slices=1, seed=7,
                                         patient_name="VIEWER^TILES", patient_id="VWR-T")), headers)
    plain = list(synth_series(modality="CT", rows=256, columns=256, slices=3, seed=9,
                              patient_name="VIEWER^NOSPACING", patient_id="VWR-N"))
    for ds in plain:
        del ds.PixelSpacing
    nospacing = _load(url, plain, headers)
    return ViewerData(ct, mr, other, large, nospacing)


@pytest.fixture(scope="module")
def viewer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, ViewerData]]:
    # Renditions off: the transcoder would compete for the two cores with the browser; the images
    # are the same either way (renditions are verified bit-exact).
    srv = start_server(tmp_path_factory.mktemp("viewer") / "data", env={"TESSERA_RENDITIONS": "0"})
    try:
        yield srv, load_viewer_data(srv.url)
    finally:
        stop_server(srv)
