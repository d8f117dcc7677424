"""``tessera renditions --data DIR [--run]``: progress, then the backlog worked in the foreground."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pydicom
import pytest

from archive.renditions import try_lock
from archive.service import Archive, ArchiveConfig
from archive.synth import synth_series
from web.cli import main


def _store(root: Path) -> None:
    blobs = []
    for ds in synth_series(rows=64, columns=64, slices=2, syntax="j2k", seed=41):
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        blobs.append(buf.getvalue())
    archive = Archive(root, ArchiveConfig(durable=False))
    assert all(r.ok for r in archive.store(blobs))
    archive.index.close()


def test_progress_then_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _store(tmp_path)
    assert main(["renditions", "--data", str(tmp_path)]) == 0
    assert "done 0, skipped 0, backlog 2, bytes 0" in capsys.readouterr().out
    assert main(["renditions", "--data", str(tmp_path), "--run"]) == 0
    out = capsys.readouterr().out
    assert "done 2, skipped 0, gone 0, failed 0" in out
    assert "done 2, skipped 0, backlog 0, bytes " in out and "% of the " in out


def test_run_refused_while_a_server_transcodes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _store(tmp_path)
    fd = try_lock(tmp_path)
    assert fd is not None
    try:
        assert main(["renditions", "--data", str(tmp_path), "--run"]) == 1
        assert "another process" in capsys.readouterr().err
    finally:
        os.close(fd)
