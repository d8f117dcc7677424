"""Issue 5: fast-decode rendition cost and payoff on a synthetic 512x512 lossless J2K CT, one thread.

Prints the transcoding throughput (frames/s, with the split into original decode, HTJ2K encode and the
verifying decode), end to end through ``run_backlog`` on a scratch archive (reads, blob writes, index
rows included), the extra storage as a share of the originals, and the decode times the renderer sees
before and after (full and reduced resolution). Scratch goes to ``bench/work/renditions``.

    .venv/bin/python bench/rendition_bench.py [--slices 40] [--rows 512]
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import time
from dataclasses import replace
from pathlib import Path

import pydicom

from archive import renditions as rd
from archive.service import Archive, ArchiveConfig
from archive.synth import synth_series
from render.codecs import decode

WORK = Path(__file__).resolve().parent / "work" / "renditions"


def _median_ms(fn, repeat: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--rows", type=int, default=512)
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    blobs = []
    for ds in synth_series(rows=args.rows, columns=args.rows, slices=args.slices, syntax="j2k", seed=5):
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        blobs.append(buf.getvalue())
    archive = Archive(WORK, ArchiveConfig(durable=False))
    assert all(r.ok for r in archive.store(blobs))
    records = archive.index.instances(str(pydicom.dcmread(io.BytesIO(blobs[0])).StudyInstanceUID))
    frames = [archive.frame(r, 1) for r in records]
    info = records[0].frame_info
    assert info is not None
    hinfo = replace(info, transfer_syntax_uid=rd.RENDITION_SYNTAX)

    # Stage split on one frame (median of 5), then the whole series through transcode_frame.
    sample = frames[len(frames) // 2]
    arr = decode(sample, info).array
    levels = rd.decomposition_levels(info.rows, info.columns)
    codestream = rd.encode_htj2k(arr, levels, rgb=False)
    t_dec = _median_ms(lambda: decode(sample, info))
    t_enc = _median_ms(lambda: rd.encode_htj2k(arr, levels, rgb=False))
    t_ver = _median_ms(lambda: decode(codestream, hinfo))
    t_red = _median_ms(lambda: decode(codestream, hinfo, reduce=2))
    start, cpu_start = time.perf_counter(), time.process_time()
    for data in frames:
        rd.transcode_frame(data, info)
    wall = time.perf_counter() - start
    pure, cores = len(frames) / wall, (time.process_time() - cpu_start) / wall

    start = time.perf_counter()
    counts = rd.run_backlog(archive, rd.RenditionPolicy())
    end_to_end = counts["done"] / (time.perf_counter() - start)
    stats = archive.index.rendition_stats(rd.SOURCE_SYNTAXES, None)
    codestream_bytes = sum(len(f) for f in frames)

    print(f"{args.slices} slices {info.rows}x{info.columns} J2K lossless, one thread")
    print(f"  per frame: J2K decode {t_dec:.1f} ms, HTJ2K encode {t_enc:.1f} ms, verify decode {t_ver:.1f} ms")
    print(f"  transcode_frame: {pure:.1f} frames/s using {cores:.2f} cores; run_backlog (read, transcode, "
          f"write, index): {end_to_end:.1f} frames/s")
    print(f"  renderer decode: original {t_dec:.1f} ms -> rendition {t_ver:.1f} ms full, {t_red:.2f} ms at 1/4")
    print(f"  storage: renditions {stats.bytes} bytes = {100 * stats.bytes / stats.original_bytes:.1f}% of the "
          f"original files ({stats.original_bytes}), {100 * stats.bytes / codestream_bytes:.1f}% of their J2K "
          f"codestreams; raw pixels would be {len(frames) * arr.nbytes}")
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
