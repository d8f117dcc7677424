"""The event loop's record cache (archive/records.py) on a real archive: hits while the index is
unchanged, emptied by any commit (this process, another thread, another process), never filled with
records read before a change, one series load at a time."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom

from archive.records import RecordCache
from archive.service import Archive, ArchiveConfig
from archive.synth import synth_series

ROOT = Path(__file__).resolve().parents[2]


def _blobs(seed: int, slices: int = 3) -> list[bytes]:
    out = []
    for ds in synth_series(modality="CT", rows=32, columns=32, slices=slices, syntax="explicit", seed=seed):
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


def _uids(archive: Archive, blobs: list[bytes]) -> list[tuple[str, str, str]]:
    results = archive.store(blobs)
    return [(r.study_uid, r.series_uid, r.sop_instance_uid) for r in results]


Uids = list[tuple[str, str, str]]


def _stored(
    root: Path, writer: ThreadPoolExecutor, seed: int, slices: int = 3, **cache_options: int
) -> tuple[Archive, Uids, RecordCache]:
    """An archive with one series stored from ``writer``'s thread (another connection than the
    test's, as the I/O pool's is to the event loop's), and a record cache on the test's connection."""
    archive = Archive(root, ArchiveConfig(durable=False))
    uids = writer.submit(_uids, archive, _blobs(seed, slices)).result()
    return archive, uids, RecordCache(archive.index.data_version, **cache_options)


def _read_series(archive: Archive, writer: ThreadPoolExecutor, cache: RecordCache, uid: tuple[str, str, str]) -> tuple[int, list]:
    """The cache's version, then the series' records read from ``writer``'s thread after it."""
    version = cache.version()
    return version, writer.submit(archive.index.instances, uid[0], uid[1]).result()


def test_hits_until_a_commit_from_another_thread_empties_it(tmp_path: Path) -> None:
    with ThreadPoolExecutor(1) as writer:
        archive, uids, cache = _stored(tmp_path, writer, 1)
        version, records = _read_series(archive, writer, cache, uids[0])
        cache.fill(version, records, series=uids[0][:2])
        assert all(cache.get(*u) is not None for u in uids)
        assert not cache.claim_series(*uids[0][:2])  # loaded: nothing to load again
        writer.submit(archive.delete, uids[0][0], uids[0][1], uids[0][2]).result()
        assert cache.get(*uids[0]) is None  # the delete's commit emptied it
        assert cache.get(*uids[1]) is None
        assert cache.claim_series(*uids[0][:2])


def test_records_read_before_a_change_are_not_kept(tmp_path: Path) -> None:
    with ThreadPoolExecutor(1) as writer:
        archive, uids, cache = _stored(tmp_path, writer, 2)
        version = cache.version()
        stale = writer.submit(archive.index.instance, *uids[0]).result()
        writer.submit(_uids, archive, _blobs(3)).result()  # a commit between the read and the fill
        cache.fill(version, [stale])
        assert cache.get(*uids[0]) is None


def test_a_commit_by_another_process_empties_it(tmp_path: Path) -> None:
    with ThreadPoolExecutor(1) as writer:
        archive, uids, cache = _stored(tmp_path, writer, 4)
    version = cache.version()
    cache.fill(version, [archive.index.instance(*uids[0])])
    assert cache.get(*uids[0]) is not None
    script = textwrap.dedent(f"""
        from archive.service import Archive, ArchiveConfig
        a = Archive({str(tmp_path)!r}, ArchiveConfig(durable=False))
        a.delete({uids[0][0]!r}, {uids[0][1]!r}, {uids[0][2]!r})
    """)
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True)
    assert cache.get(*uids[0]) is None


def test_one_series_load_at_a_time_and_a_bound(tmp_path: Path) -> None:
    with ThreadPoolExecutor(1) as writer:
        archive, uids, cache = _stored(tmp_path, writer, 5, slices=4, max_frames=3)  # a frame per slice
        assert cache.claim_series(*uids[0][:2])
        assert not cache.claim_series(*uids[0][:2])  # someone is loading it
        cache.release_series(*uids[0][:2])
        assert cache.claim_series(*uids[0][:2])
        version, records = _read_series(archive, writer, cache, uids[0])
        cache.fill(version, records[:2])
        cache.fill(version, records[2:])  # above the bound: starts over rather than growing
        assert sum(cache.get(*u) is not None for u in uids) == 2


def test_a_series_load_thrown_away_holds_back_the_next(tmp_path: Path) -> None:
    """While the index keeps changing (an ingest), whole-series loads would only be discarded."""
    with ThreadPoolExecutor(1) as writer:
        archive, uids, cache = _stored(tmp_path, writer, 6)
        version, records = _read_series(archive, writer, cache, uids[0])
        writer.submit(_uids, archive, _blobs(7)).result()  # a commit while the load "ran"
        assert cache.claim_series(*uids[0][:2])
        cache.fill(version, records, series=uids[0][:2])
        cache.release_series(*uids[0][:2])
        assert cache.get(*uids[0]) is None
        assert not cache.claim_series(*uids[0][:2])  # backing off


def test_a_batch_larger_than_the_bound_is_not_kept(tmp_path: Path) -> None:
    with ThreadPoolExecutor(1) as writer:
        archive, uids, cache = _stored(tmp_path, writer, 8, slices=4, max_frames=3)
        cache.fill(*_read_series(archive, writer, cache, uids[0]))
        assert all(cache.get(*u) is None for u in uids)
