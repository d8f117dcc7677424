"""Ingest with parser processes (archive/parsepool.py): the same outcome as parsing in the calling
thread for every corpus file, broken ones included; nothing left behind for refused or duplicate
instances; a broken pool costs no request."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archive import parsepool
from archive.service import Archive, ArchiveConfig
from tests.conftest import corpus, process_alive

PROCESSES = 2


@pytest.fixture(scope="module")
def blobs() -> list[bytes]:
    return [f.path.read_bytes() for f in corpus()]


def _archive(root: Path, processes: int) -> Archive:
    return Archive(root, ArchiveConfig(durable=False, parse_processes=processes))


def _outcomes(archive: Archive, blobs: list[bytes]) -> list[tuple[str, str, int, str]]:
    return [(r.status, r.sop_instance_uid, r.failure_reason, r.message) for r in archive.store(blobs)]


def test_pool_and_thread_parse_every_corpus_file_alike(tmp_path: Path, blobs: list[bytes]) -> None:
    in_pool = _archive(tmp_path / "pool", PROCESSES)
    in_thread = _archive(tmp_path / "thread", 0)
    assert _outcomes(in_pool, blobs) == _outcomes(in_thread, blobs)
    # Again: every refusal (broken files, other bytes under a SOP UID seen before) repeated, the rest
    # found rather than stored twice.
    assert _outcomes(in_pool, blobs) == _outcomes(in_thread, blobs)
    assert {r.status for r in in_pool.store(blobs)} <= {"present", "failed"}


def test_parsed_instances_equal(tmp_path: Path, blobs: list[bytes]) -> None:
    staging = _archive(tmp_path / "a", 0).storage
    paths = staging.stage(blobs, durable=False)
    try:
        pooled = parsepool.parse_all(blobs, paths, max_pixel_bytes=4 << 30, processes=PROCESSES)
    finally:
        staging.discard(paths)
    inline = parsepool.parse_all(blobs, None, max_pixel_bytes=4 << 30, processes=0)
    for a, b in zip(pooled, inline, strict=True):
        if isinstance(b, Exception):
            assert type(a) is type(b) and str(a) == str(b)
            assert (a.sop_class_uid, a.sop_instance_uid) == (b.sop_class_uid, b.sop_instance_uid)  # type: ignore[union-attr]
        else:
            assert a == b


def test_nothing_left_in_temporary_folder(tmp_path: Path, blobs: list[bytes]) -> None:
    archive = _archive(tmp_path / "pool", PROCESSES)
    archive.store(blobs)
    archive.store(blobs)  # all present (or refused) now: their staged copies must go too
    assert list((tmp_path / "pool" / "tmp").iterdir()) == []
    reference = _archive(tmp_path / "thread", 0)
    reference.store(blobs)

    def blob_count(root: Path) -> int:
        return sum(1 for d in (root / "objects").iterdir() for _f in d.iterdir())

    assert blob_count(tmp_path / "pool") == blob_count(tmp_path / "thread")


def test_a_killed_parser_process_costs_no_request(tmp_path: Path, blobs: list[bytes]) -> None:
    archive = _archive(tmp_path / "pool", PROCESSES)
    parsepool.start(PROCESSES)
    pool = parsepool._shared(PROCESSES)
    for pid in list(pool._processes):  # the pool's own processes: the OOM killer's kind of end
        os.kill(pid, signal.SIGKILL)
    reference = _archive(tmp_path / "thread", 0)
    assert _outcomes(archive, blobs[:5]) == _outcomes(reference, blobs[:5])
    # The next call gets a new pool of live processes.
    assert _outcomes(archive, blobs[:8]) == _outcomes(reference, blobs[:8])
    assert parsepool._shared(PROCESSES) is not pool


def test_an_unreadable_staged_file_costs_no_instance(tmp_path: Path, blobs: list[bytes]) -> None:
    paths = [tmp_path / "gone-1", tmp_path / "gone-2"]  # staged copies that vanished
    got = parsepool.parse_all(blobs[:2], paths, max_pixel_bytes=4 << 30, processes=PROCESSES)
    assert got == parsepool.parse_all(blobs[:2], None, max_pixel_bytes=4 << 30, processes=0)


def test_parser_processes_end_with_a_killed_server(tmp_path: Path) -> None:
    script = (
        "import sys; from archive import parsepool\n"
        "parsepool.start(2)\n"
        "print(' '.join(str(p) for p in parsepool._shared(2)._processes), flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    children = [int(p) for p in proc.stdout.readline().split()]
    assert len(children) == 2
    proc.kill()  # what uvicorn does to a worker that stopped answering
    proc.wait()
    proc.stdout.close()
    deadline = time.monotonic() + 10
    while any(process_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)  # polling with a deadline: they notice within a second
    assert not any(process_alive(pid) for pid in children)
