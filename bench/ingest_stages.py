"""Where ingest's CPU goes (issue 2), in-process, per instance: pydicom's read of the file, the rest of
``archive.parse.parse_instance`` (UIDs, FrameInfo, frame table, DICOM JSON, index attributes), the
blob writes and the index inserts, on the 300-slice 512x512 explicit-VR CT of
``bench/archive_bench.py``. No HTTP and no client: what the server itself spends, stage by stage.

CPU time (``time.process_time``) per instance, the best of ``--rounds`` passes over the series (the
shared machine only ever makes a pass slower). Writes go to a fresh archive without fsync.

Run: .venv/bin/python bench/ingest_stages.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make `bench` and `archive` importable
    sys.path.insert(0, str(ROOT))

from pydicom import dcmread

from archive.parse import parse_instance
from archive.service import Archive, ArchiveConfig
from archive.storage import new_key
from bench.archive_bench import make_series

MAX_PIXEL_BYTES = 4 << 30


def per_instance_ms(fn: Callable[[], Any], n: int) -> float:
    t0 = time.process_time()
    fn()
    return (time.process_time() - t0) / n * 1000


def one_pass(files: list[bytes], work: Path) -> dict[str, float]:
    n = len(files)
    out = {"pydicom dcmread": per_instance_ms(lambda: [dcmread(BytesIO(f), force=True) for f in files], n)}
    parsed: list[Any] = []
    out["parse_instance (dcmread included)"] = per_instance_ms(
        lambda: parsed.extend(parse_instance(f, max_pixel_bytes=MAX_PIXEL_BYTES) for f in files), n)
    shutil.rmtree(work, ignore_errors=True)
    archive = Archive(work, ArchiveConfig(durable=False))
    keys = [new_key() for _ in files]

    def write() -> None:
        for i in range(0, n, 10):
            archive.storage.put_many(list(zip(keys[i:i + 10], files[i:i + 10], strict=True)), durable=False)

    def index() -> None:
        for i in range(0, n, 10):
            archive.index.add_many([(parsed[j], keys[j], len(files[j])) for j in range(i, min(i + 10, n))],
                                   overwrite=False)

    out["blob writes"] = per_instance_ms(write, n)
    out["index inserts"] = per_instance_ms(index, n)
    archive.index.close()
    shutil.rmtree(work, ignore_errors=True)
    archive = Archive(work, ArchiveConfig(durable=False))
    out["Archive.store, all of it (batches of 10)"] = per_instance_ms(
        lambda: [archive.store(files[i:i + 10]) for i in range(0, n, 10)], n)
    archive.index.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    files = make_series(args.slices).files
    with tempfile.TemporaryDirectory(prefix="tessera-ingest-") as tmp:
        passes = [one_pass(files, Path(tmp) / "archive") for _ in range(args.rounds)]
    print(f"CPU ms per instance, best of {args.rounds} passes over {len(files)} instances:")
    for stage in passes[0]:
        print(f"  {stage:<42}{min(p[stage] for p in passes):7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
