"""Archive.store when the index fails part-way: what was indexed stays stored and reported so, and the
index never points at a missing file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from archive.service import Archive, ArchiveConfig
from tests.conftest import corpus


def _archive(root: Path) -> Archive:
    return Archive(root, ArchiveConfig(durable=False))


def test_a_failed_rewrite_of_a_copy_deleted_meanwhile_fails_only_that_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resend whose stored copy is deleted between the duplicate check and the index transaction is
    written afresh; when that second write fails (a failing disk, injected), the instances the first
    transaction indexed stay stored and are reported so, and every indexed blob still exists."""
    archive = _archive(tmp_path / "a")
    series = [f.path.read_bytes() for f in corpus() if f.name.startswith("ct_ge_head_gantry_tilt_28/")][:3]
    assert len(series) == 3
    first = archive.store(series[:1])[0]
    assert first.status == "stored"
    real_add_many = archive.index.add_many
    calls: list[int] = []

    def add_many(items, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(items))
        if len(calls) == 1:  # the concurrent DELETE, just before the transaction
            archive.delete(first.study_uid, first.series_uid, first.sop_instance_uid)
            return real_add_many(items, **kwargs)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(archive.index, "add_many", add_many)
    results = archive.store(series)  # the first again (its copy now gone) and two new ones
    monkeypatch.undo()
    assert calls == [3, 1]
    assert results[0].status == "failed" and results[0].failure_reason == 0x0110
    assert [r.status for r in results[1:]] == ["stored", "stored"]
    keys = archive.index.all_blob_keys()
    assert len(keys) == 2 and all(archive.storage.path(k).exists() for k in keys)
