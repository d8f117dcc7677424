"""Fixtures of the security suite: one real server with a little real data loaded, its credentials,
and a session-wide count of the generated cases (printed in the terminal summary, issue 7 asks how
many ran).

Credentials come from ``admin_headers`` only: switching the suite between anonymous and authenticated
access is that one fixture.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import DATA, Server, start_server, stop_server
from tests.dicomweb_helpers import multipart_body

#: Small real files loaded before the suites run, so retrieve and render routes have something to hit:
#: native multi-frame MR, native CT, JPEG baseline multi-frame (WSI tiles), JPEG-LS near-lossless 2 frames, and a
#: JPEG extended file pydicom cannot decode (stored, must render as a 4xx, never a 500).
LOADED_FILES = (
    "photometric_and_oddities/emri_small.dcm",
    "photometric_and_oddities/CT_small.dcm",
    "wsi_camelyon_tile_jpeg/multiframe_camelyon_challenge_image.dcm",
    "ts_ct_nema_encapsulation/CT0012.fragmented_no_bot_jpeg_ls.81.dcm",
    "photometric_and_oddities/1.2.840.10008.1.2.4.51.dcm",
)

CASES: Counter[str] = Counter()
STATUSES: dict[str, Counter[int]] = {}


def count(kind: str, status: int | None = None) -> None:
    """Record one generated case of ``kind`` (``hypothesis`` or ``schemathesis``) and its status."""
    CASES[kind] += 1
    if status is not None:
        STATUSES.setdefault(kind, Counter())[status] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if CASES:
        parts = ", ".join(f"{kind}: {n}" for kind, n in sorted(CASES.items()))
        terminalreporter.write_sep("-", f"security cases run: {parts} (total {sum(CASES.values())})")
        for kind, statuses in sorted(STATUSES.items()):
            by = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
            terminalreporter.write_line(f"  {kind} responses by status: {by}")


@dataclass(frozen=True)
class Stored:
    """One loaded instance: its UIDs and number of frames (0 without pixel data)."""

    study: str
    series: str
    sop: str
    frames: int

    @property
    def path(self) -> str:
        return f"/studies/{self.study}/series/{self.series}/instances/{self.sop}"


@dataclass(frozen=True)
class Loaded:
    server: Server
    headers: dict[str, str]
    instances: tuple[Stored, ...]


def start(data: Path) -> tuple[Server, dict[str, str]]:
    """A server with authentication on when ``tests.conftest.start_server`` supports it (an admin
    token as a bearer header), else anonymous; the one place the suite picks its credentials."""
    if "auth" in inspect.signature(start_server).parameters:
        server = start_server(data, auth=True)  # type: ignore[call-arg]
        token = getattr(server, "admin_token", None)
        assert token, "start_server(auth=True) returned no admin token"
        return server, {"Authorization": f"Bearer {token}"}
    return start_server(data), {}


def load(server: Server, headers: dict[str, str], files: tuple[str, ...] = LOADED_FILES) -> tuple[Stored, ...]:
    body, content_type = multipart_body([(DATA / f).read_bytes() for f in files])
    r = httpx.post(server.url + "/studies", content=body, headers={**headers, "Content-Type": content_type},
                   timeout=60)
    assert r.status_code == 200, r.text[:500]
    return instances(server, headers)


def instances(server: Server, headers: dict[str, str]) -> tuple[Stored, ...]:
    r = httpx.get(server.url + "/instances", params={"includefield": "NumberOfFrames"}, headers=headers, timeout=30)
    assert r.status_code == 200, r.text[:500]
    out = []
    for d in r.json():
        frames = d.get("00280008", {}).get("Value", [0])[0] or 0
        out.append(Stored(d["0020000D"]["Value"][0], d["0020000E"]["Value"][0], d["00080018"]["Value"][0],
                          int(frames)))
    return tuple(sorted(out, key=lambda s: s.sop))


@pytest.fixture(scope="session")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    server, headers = start(tmp_path_factory.mktemp("security") / "data")
    try:
        yield Loaded(server, headers, load(server, headers))
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def admin_headers(loaded: Loaded) -> dict[str, str]:
    return loaded.headers
