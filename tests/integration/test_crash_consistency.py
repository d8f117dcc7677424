"""A server killed in the middle of an upload leaves the archive consistent: after a restart every
indexed instance's file is there, no temporary file survives, and the interrupted upload stored nothing."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server, stop_server
from tests.dicomweb_helpers import multipart_body, stow
from tests.qido_cases import STUDIES, make_instance


def _indexed_keys(data: Path) -> list[str]:
    with sqlite3.connect(data / "index.sqlite") as conn:
        return [r[0] for r in conn.execute("SELECT blob_key FROM instances")]


def test_kill_during_upload_keeps_archive_consistent(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    try:
        assert stow(server.url, [make_instance(STUDIES[0], 1, "CT", n) for n in (1, 2)]).status_code == 200
        body, content_type = multipart_body([make_instance(STUDIES[1], 1, "CT", n) for n in range(1, 40)])
        host, port = server.root.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)))
        head = (
            f"POST /dicomweb/studies HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        sock.sendall(head + body[: len(body) * 2 // 3])  # two thirds of the body, then the server dies
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        sock.close()
    finally:
        if server.process.poll() is None:
            stop_server(server)
    restarted = start_server(data)
    try:
        keys = _indexed_keys(data)
        assert len(keys) == 2
        for key in keys:
            assert (data / "objects" / key[:2] / key).is_file()
        assert list((data / "tmp").iterdir()) == []
        assert len(httpx.get(f"{restarted.url}/instances").json()) == 2
    finally:
        stop_server(restarted)


@pytest.mark.parametrize("workers", [2])
def test_workers_share_one_archive(tmp_path: Path, workers: int) -> None:
    server = start_server(tmp_path / "data", workers=workers)
    try:
        blobs = [make_instance(STUDIES[2], 1, "US", n) for n in range(1, 21)]
        results = [stow(server.url, [b]) for b in blobs]
        assert all(r.status_code == 200 for r in results)
        assert len(httpx.get(f"{server.url}/instances").json()) == 20
    finally:
        stop_server(server)
