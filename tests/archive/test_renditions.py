"""Fast-decode renditions (archive/renditions.py): bit-exact to the original for every lossless file of
the corpus and every synthetic lossless syntax, .4.202 codestream options, lossy originals left
alone, crash consistency (an exception and a SIGKILL between the blob write and the index commit) with
the work resuming, delete and replace removing the rendition, and the schema migration 1 -> 2."""

from __future__ import annotations

import asyncio
import io
import os
import sqlite3
import struct
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from prometheus_client import REGISTRY

from archive import renditions as rd
from archive.errors import ArchiveError
from archive.index import InstanceRecord, SQLiteIndex
from archive.service import Archive, ArchiveConfig
from archive.synth import SYNTAX_CHOICES, synth_series
from render.codecs import decode
from render.codecs.base import LOSSLESS_SYNTAXES
from tests.conftest import BROKEN, DATA, corpus

ROOT = Path(__file__).resolve().parents[2]
SOURCE_SYNTH = ["j2k", "jpegls", "jpeg-lossless", "jpeg-lossless-57"]
LOSSY_SYNTH = ["j2k-lossy", "jpegls-near", "jpeg-baseline", "jpeg-extended", "htj2k-lossy"]
LOSSLESS_CORPUS = [
    f.name for f in corpus() if f.name not in BROKEN and f.row["transfer_syntax"] in LOSSLESS_SYNTAXES
]


def _blobs(syntax: str, seed: int, slices: int = 3, modality: str = "CT") -> list[bytes]:
    out = []
    for ds in synth_series(modality=modality, rows=64, columns=64, slices=slices, syntax=syntax, seed=seed):  # type: ignore[arg-type]
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


def _archive(root: Path) -> Archive:
    return Archive(root, ArchiveConfig(durable=False))


def _records(archive: Archive) -> list[InstanceRecord]:
    conn = sqlite3.connect(archive.root / "index.sqlite")
    studies = [r[0] for r in conn.execute("SELECT study_uid FROM studies")]
    conn.close()
    return [r for s in studies for r in archive.index.instances(s)]


def _assert_exact(archive: Archive, record: InstanceRecord) -> None:
    """Every frame of the rendition decodes to exactly the original frame's pixels and colour space."""
    assert record.rendition is not None and record.frame_info is not None
    assert len(record.rendition.frames) == record.number_of_frames
    for n in range(1, record.number_of_frames + 1):
        original = decode(archive.frame(record, n), record.frame_info)
        data, info = archive.render_source(record, n)
        assert info.transfer_syntax_uid == rd.RENDITION_SYNTAX
        copy = decode(data, info)
        assert copy.array.dtype == original.array.dtype
        assert copy.photometric == original.photometric
        assert np.array_equal(copy.array, original.array), f"frame {n}"


def _consistent(archive: Archive) -> None:
    """No rendition row without its blob, and no row for an original that is not indexed."""
    conn = sqlite3.connect(archive.root / "index.sqlite")
    rows = conn.execute("SELECT blob_key, rendition_key FROM renditions WHERE status='done'").fetchall()
    originals = {r[0] for r in conn.execute("SELECT blob_key FROM instances")}
    conn.close()
    for blob_key, key in rows:
        assert blob_key in originals
        assert archive.storage.path(key).is_file()


def _markers(codestream: bytes) -> dict[int, list[bytes]]:
    """Main-header marker segments of a JPEG 2000 codestream (ISO 15444-1 A.2), up to the first SOT."""
    out: dict[int, list[bytes]] = {}
    i = 2
    while i < len(codestream):
        (marker,) = struct.unpack(">H", codestream[i : i + 2])
        if marker == 0xFF90:
            break
        (length,) = struct.unpack(">H", codestream[i + 2 : i + 4])
        out.setdefault(marker, []).append(codestream[i + 4 : i + 2 + length])
        i += 2 + length
    return out


# --- exactness -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LOSSLESS_CORPUS)
def test_corpus_lossless_file_gets_an_exact_rendition(tmp_path: Path, name: str) -> None:
    archive = _archive(tmp_path)
    result = archive.store([(DATA / name).read_bytes()])[0]
    assert result.ok, result.message
    record = archive.index.instance(result.study_uid, result.series_uid, result.sop_instance_uid)
    assert record.frame_info is not None
    if record.transfer_syntax_uid in rd.SOURCE_SYNTAXES:
        assert rd.transcode_instance(archive, record) == "done"
        _assert_exact(archive, archive.index.instance(result.study_uid, result.series_uid, result.sop_instance_uid))
    else:
        # Native and RLE already decode faster than HTJ2K: not in the backlog. The transcoder run on
        # them anyway gives an exact copy or refuses (e.g. YBR_FULL_422, which a decoder upsamples).
        assert archive.index.backlog_page(rd.SOURCE_SYNTAXES, None, below=None) == []
        data = archive.frame(record, 1)
        try:
            codestream = rd.transcode_frame(data, record.frame_info)
        except rd.RenditionNotExact:
            return
        expected = decode(data, record.frame_info)
        got = decode(codestream, replace(record.frame_info, transfer_syntax_uid=rd.RENDITION_SYNTAX))
        assert np.array_equal(got.array, expected.array) and got.photometric == expected.photometric


def test_every_slow_lossless_corpus_syntax_is_covered() -> None:
    syntaxes = {f.row["transfer_syntax"] for f in corpus() if f.name in LOSSLESS_CORPUS}
    assert rd.SOURCE_SYNTAXES <= syntaxes


@pytest.mark.parametrize("syntax", SOURCE_SYNTH)
def test_synthetic_lossless_syntax_gets_an_exact_rendition(tmp_path: Path, syntax: str) -> None:
    archive = _archive(tmp_path)
    assert all(r.ok for r in archive.store(_blobs(syntax, seed=3)))
    counts = rd.run_backlog(archive, rd.RenditionPolicy())
    assert counts == {"done": 3, "skipped": 0, "gone": 0, "failed": 0}
    for record in _records(archive):
        assert record.transfer_syntax_uid == SYNTAX_CHOICES[syntax]
        _assert_exact(archive, record)
    stats = archive.index.rendition_stats(rd.SOURCE_SYNTAXES, None)
    assert (stats.done, stats.backlog, stats.skipped) == (3, 0, 0)
    assert 0 < stats.bytes < 3 * 64 * 64 * 2


def test_codestream_has_the_4_202_options() -> None:
    """Reversible, RPCL progression, tile-parts per resolution with TLM, smallest resolution <= 64 px."""
    arr = np.random.default_rng(0).integers(0, 4096, (600, 2500)).astype(np.uint16)
    codestream = rd.encode_htj2k(arr, rd.decomposition_levels(600, 2500), rgb=False)
    markers = _markers(codestream)
    cod = markers[0xFF52][0]
    assert cod[1] == 2  # progression order RPCL (ISO 15444-1 Table A.16)
    decompositions = cod[5]
    assert -(-2500 // (1 << decompositions)) <= 64 and decompositions >= rd.MIN_DECOMPOSITIONS
    assert cod[9] == 1  # 5/3 reversible wavelet (Table A.20)
    assert 0xFF55 in markers  # TLM
    assert 0xFF50 in markers  # CAP: HTJ2K (ISO 15444-15)
    assert rd.decomposition_levels(512, 512) == 5
    assert rd.decomposition_levels(4096, 4096) == 6
    assert rd.decomposition_levels(16, 16) == 5


# --- lossy originals ------------------------------------------------------------------------------


@pytest.mark.parametrize("syntax", LOSSY_SYNTH)
def test_lossy_original_is_never_given_a_rendition(tmp_path: Path, syntax: str) -> None:
    archive = _archive(tmp_path)
    assert all(r.ok for r in archive.store(_blobs(syntax, seed=4, slices=2)))
    assert rd.run_backlog(archive, rd.RenditionPolicy()) == {"done": 0, "skipped": 0, "gone": 0, "failed": 0}
    for record in _records(archive):
        assert record.rendition is None
        data, info = archive.render_source(record, 1)
        assert info.transfer_syntax_uid == SYNTAX_CHOICES[syntax] and data == archive.frame(record, 1)


def test_transcoder_would_be_exact_on_lossy_pixels_too(tmp_path: Path) -> None:
    """Documents the choice: HTJ2K reversible reproduces a lossy original's decoded pixels exactly
    (the verification would pass); lossy originals are skipped for size, not for exactness."""
    archive = _archive(tmp_path)
    archive.store(_blobs("j2k-lossy", seed=5, slices=1))
    [record] = _records(archive)
    assert record.frame_info is not None
    data = archive.frame(record, 1)
    got = decode(rd.transcode_frame(data, record.frame_info),
                 replace(record.frame_info, transfer_syntax_uid=rd.RENDITION_SYNTAX))
    assert np.array_equal(got.array, decode(data, record.frame_info).array)


def test_inexact_copy_is_skipped_and_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _archive(tmp_path)
    archive.store(_blobs("j2k", seed=6, slices=2))

    def inexact(data: bytes, info: object) -> bytes:
        raise rd.RenditionNotExact("simulated mismatch")

    monkeypatch.setattr(rd, "transcode_frame", inexact)
    assert rd.run_backlog(archive, rd.RenditionPolicy())["skipped"] == 2
    monkeypatch.undo()
    assert rd.run_backlog(archive, rd.RenditionPolicy())["done"] == 0  # remembered: not in the backlog
    assert all(r.rendition is None for r in _records(archive))
    assert archive.index.rendition_stats(rd.SOURCE_SYNTAXES, None).skipped == 2


def test_modalities_policy(tmp_path: Path) -> None:
    archive = _archive(tmp_path)
    archive.store(_blobs("j2k", seed=7, slices=2, modality="CT") + _blobs("jpegls", seed=8, slices=2, modality="MR"))
    policy = rd.RenditionPolicy.from_modalities(" mr ")
    assert policy.modalities == frozenset({"MR"})
    assert rd.RenditionPolicy.from_modalities("").modalities is None
    assert rd.run_backlog(archive, policy)["done"] == 2
    assert archive.index.rendition_stats(rd.SOURCE_SYNTAXES, None).backlog == 2  # the CT slices


# --- the background worker -----------------------------------------------------------------------


def test_worker_yields_to_interactive_work_and_runs_one_job_at_a_time(tmp_path: Path) -> None:
    archive = _archive(tmp_path)
    archive.store(_blobs("j2k", seed=15, slices=4))
    busy, running, peak = [True], [0], [0]
    pool = ThreadPoolExecutor(4)

    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def io(fn: Any, *args: Any) -> Any:
            return await loop.run_in_executor(pool, partial(fn, *args))

        async def cpu(fn: Any, *args: Any) -> Any:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            try:
                return await io(fn, *args)
            finally:
                running[0] -= 1

        worker = rd.RenditionWorker(archive, rd.RenditionPolicy(), cpu=cpu, io=io, busy=lambda: busy[0],
                                    idle_seconds=0.05, pause_seconds=0.005)
        worker.start()
        await asyncio.sleep(0.3)
        assert peak[0] == 0  # an interactive render is in flight: nothing started
        busy[0] = False
        await asyncio.wait_for(worker.idle.wait(), 30)
        await worker.aclose()

    try:
        asyncio.run(main())
    finally:
        pool.shutdown()
    assert peak[0] == 1  # one frame job at a time in the CPU pool
    assert archive.index.rendition_stats(rd.SOURCE_SYNTAXES, None).done == 4
    assert REGISTRY.get_sample_value("tessera_rendition_backlog") == 0
    fd = rd.try_lock(tmp_path)  # released on close
    assert fd is not None
    os.close(fd)


# --- crash consistency ----------------------------------------------------------------------------


def test_failure_between_blob_and_index_leaves_archive_consistent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = _archive(tmp_path)
    archive.store(_blobs("j2k", seed=9, slices=3))

    def crash(*_args: object) -> bool:
        raise OSError("simulated crash after the blob write, before the index commit")

    monkeypatch.setattr(archive.index, "add_rendition", crash)
    assert rd.run_backlog(archive, rd.RenditionPolicy())["failed"] == 3
    monkeypatch.undo()
    _consistent(archive)
    assert all(r.rendition is None for r in _records(archive))
    assert archive.index.rendition_stats(rd.SOURCE_SYNTAXES, None).backlog == 3  # still to do
    assert rd.run_backlog(archive, rd.RenditionPolicy())["done"] == 3  # resumes; overwrites its orphans
    _consistent(archive)
    blobs = [p for p in (tmp_path / "objects").rglob("*") if p.is_file()]
    assert len(blobs) == 6  # three originals, three renditions: no orphan left
    assert archive.sweep_orphans(min_age_seconds=0) == 0  # renditions are referenced blobs
    # A blob another worker wrote a moment ago and has not indexed yet is left alone.
    fresh = tmp_path / "objects" / "zz" / "zz-not-yet-indexed"
    fresh.parent.mkdir(parents=True, exist_ok=True)
    fresh.write_bytes(b"x")
    assert archive.sweep_orphans() == 0 and fresh.exists()
    assert archive.sweep_orphans(min_age_seconds=0) == 1 and not fresh.exists()


def test_sigkill_between_blob_and_index_then_resume(tmp_path: Path) -> None:
    archive = _archive(tmp_path)
    archive.store(_blobs("jpegls", seed=10, slices=4))
    archive.index.close()
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from archive import renditions as rd
        from archive.service import Archive, ArchiveConfig
        archive = Archive(Path({str(tmp_path)!r}), ArchiveConfig(durable=True))
        real = archive.index.add_rendition
        calls = []
        def add_then_die(*args):
            calls.append(1)
            if len(calls) == 3:  # the third blob is on disk, its row is not
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args)
        archive.index.add_rendition = add_then_die
        rd.run_backlog(archive, rd.RenditionPolicy())
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False, cwd=ROOT, capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    archive = _archive(tmp_path)
    _consistent(archive)
    stats = archive.index.rendition_stats(rd.SOURCE_SYNTAXES, None)
    assert (stats.done, stats.backlog) == (2, 2)
    assert rd.run_backlog(archive, rd.RenditionPolicy())["done"] == 2  # the lock died with the process
    _consistent(archive)
    for record in _records(archive):
        _assert_exact(archive, record)


def test_one_transcoder_per_archive(tmp_path: Path) -> None:
    archive = _archive(tmp_path)
    fd = rd.try_lock(tmp_path)
    assert fd is not None
    try:
        with pytest.raises(ArchiveError, match="another process"):
            rd.run_backlog(archive, rd.RenditionPolicy())
    finally:
        os.close(fd)


# --- delete and replace ---------------------------------------------------------------------------


def test_delete_removes_the_rendition(tmp_path: Path) -> None:
    archive = _archive(tmp_path)
    archive.store(_blobs("j2k", seed=11, slices=2))
    rd.run_backlog(archive, rd.RenditionPolicy())
    first, second = _records(archive)
    assert first.rendition is not None and second.rendition is not None
    archive.delete(first.study_uid, first.series_uid, first.sop_uid)
    assert not archive.storage.path(first.rendition.key).exists()
    assert not archive.storage.path(first.blob_key).exists()
    assert archive.storage.path(second.rendition.key).exists()
    archive.delete(second.study_uid)
    assert [p for p in (tmp_path / "objects").rglob("*") if p.is_file()] == []
    conn = sqlite3.connect(tmp_path / "index.sqlite")
    assert conn.execute("SELECT COUNT(*) FROM renditions").fetchone() == (0,)


def test_replace_removes_the_old_rendition(tmp_path: Path) -> None:
    archive = Archive(tmp_path, ArchiveConfig(durable=False, overwrite=True))
    [blob] = _blobs("j2k", seed=12, slices=1)
    archive.store([blob])
    rd.run_backlog(archive, rd.RenditionPolicy())
    [old] = _records(archive)
    assert old.rendition is not None
    [lossless_other] = _blobs("jpegls", seed=12, slices=1)  # same SOP Instance UID, other bytes
    assert archive.store([lossless_other])[0].status == "replaced"
    [new] = _records(archive)
    assert new.rendition is None and new.blob_key != old.blob_key
    assert not archive.storage.path(old.rendition.key).exists()
    assert archive.index.rendition_stats(rd.SOURCE_SYNTAXES, None).backlog == 1
    assert rd.run_backlog(archive, rd.RenditionPolicy())["done"] == 1
    _assert_exact(archive, _records(archive)[0])


def test_instance_deleted_during_transcode_leaves_no_row(tmp_path: Path) -> None:
    archive = _archive(tmp_path)
    archive.store(_blobs("j2k", seed=13, slices=1))
    [record] = _records(archive)
    assert record.frame_info is not None
    streams = [rd.transcode_frame(archive.frame(record, 1), record.frame_info)]
    archive.delete(record.study_uid)
    assert rd.store_rendition(archive, record, streams) is False
    assert [p for p in (tmp_path / "objects").rglob("*") if p.is_file()] == []
    _consistent(archive)


# --- schema ---------------------------------------------------------------------------------------


def test_migration_from_version_1(tmp_path: Path) -> None:
    archive = _archive(tmp_path)
    archive.store(_blobs("j2k", seed=14, slices=1))
    archive.index.close()
    conn = sqlite3.connect(tmp_path / "index.sqlite")
    conn.execute("DROP TABLE renditions")
    conn.execute("DROP INDEX instances_syntax")
    conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    archive = _archive(tmp_path)  # migrates
    conn = sqlite3.connect(tmp_path / "index.sqlite")
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("2",)
    conn.close()
    assert rd.run_backlog(archive, rd.RenditionPolicy())["done"] == 1


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    SQLiteIndex(tmp_path / "index.sqlite").close()
    conn = sqlite3.connect(tmp_path / "index.sqlite")
    conn.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(ArchiveError, match="newer"):
        SQLiteIndex(tmp_path / "index.sqlite")
