"""Codec floor: per transfer syntax, decode + fused kernel + JPEG encode of a 512x512 16-bit CT frame.

A script, not a test. For every live backend of each syntax it prints the median decode time, then the
full pipeline (default backend) on one thread and the per-frame wall time with two threads (each
rendering the same count), medians over several runs, as a table and as JSON. Use it to re-check the
backend order in ``render.codecs.registry.DEFAULT_PREFERENCES``.

    .venv/bin/python bench/codec_floor.py [--runs 30] [--json out.json]

Frames come from ``archive.synth`` (the same phantom the archive benchmarks use).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from pydicom.encaps import generate_frames

from render import codecs, kernels, pipeline
from render.codecs.base import NATIVE_SYNTAXES
from render.encode import encode_jpeg
from render.frameinfo import FrameInfo
from render.params import RenderParams

SYNTAXES = ["explicit", "bigendian", "rle", "jpeg-lossless", "jpeg-extended", "jpeg-baseline", "jpegls",
            "j2k", "j2k-lossy", "htj2k", "htj2k-rpcl"]


def frame_for(syntax: str) -> tuple[FrameInfo, bytes]:
    from archive.synth import synth_series

    ds = next(iter(synth_series(modality="CT", rows=512, columns=512, slices=1, syntax=syntax, seed=0)))
    ts = str(ds.file_meta.TransferSyntaxUID)
    info = FrameInfo.from_dataset(ds, ts)
    if ts in NATIVE_SYNTAXES:
        data = bytes(ds.PixelData)
        if ts == "1.2.840.10008.1.2.2":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                px = ds.pixel_array
            # The archive hands big endian bytes; make sure that is what we time.
            data = np.ascontiguousarray(px).astype(">u2").tobytes()
        return info, data
    return info, next(generate_frames(ds.PixelData, number_of_frames=1))


def median_ms(fn, runs: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm: first call may import or allocate
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def two_thread_ms(fn, runs: int) -> float:  # type: ignore[no-untyped-def]
    """Wall time per frame with two threads each rendering ``runs`` frames (median of 3 rounds)."""
    rounds = []
    with ThreadPoolExecutor(2) as pool:
        for _ in range(3):
            t0 = time.perf_counter()
            list(pool.map(lambda _: [fn() for _ in range(runs)], range(2)))
            rounds.append((time.perf_counter() - t0) / (2 * runs))
    return statistics.median(rounds) * 1000.0


def measure(syntax: str, params: RenderParams, runs: int) -> dict[str, Any]:
    info, data = frame_for(syntax)
    decoders = {}
    for backend in codecs.candidates(info.transfer_syntax_uid):
        decoders[backend.name] = round(median_ms(lambda b=backend: b.decode(data, info), runs), 3)
    decoded = pipeline.decode_frame(data, info)
    kernel_ms = median_ms(lambda: pipeline.pixels_from_decoded(decoded, info, 0, params), runs)
    pixels = pipeline.pixels_from_decoded(decoded, info, 0, params)
    encode_ms = median_ms(lambda: encode_jpeg(pixels, 90), runs)

    def render() -> object:
        return pipeline.render_frame(data, info, 0, params)

    one = median_ms(render, runs)
    two = two_thread_ms(render, runs)
    return {
        "syntax": syntax, "ts": info.transfer_syntax_uid, "bytes": len(data), "backend": decoded.backend,
        "decode_ms": decoders, "kernel_ms": round(kernel_ms, 3), "jpeg_ms": round(encode_ms, 3),
        "floor_1t_ms": round(one, 3), "floor_2t_ms_per_frame": round(two, 3), "speedup_2t": round(one / two, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    kernels.warm_up()
    params = RenderParams()  # stored window (CT synth carries one), native size, JPEG q90
    results = [measure(syntax, params, args.runs) for syntax in SYNTAXES]
    print(f"{'syntax':<14}{'backend':<20}{'kB':>7}{'decode':>9}{'kernel':>8}{'jpeg':>7}{'1 thr':>8}"
          f"{'2 thr':>8}{'x2':>6}  other decoders")
    for r in results:
        first = r["decode_ms"][r["backend"]]
        others = ", ".join(f"{k} {v}" for k, v in r["decode_ms"].items() if k != r["backend"])
        print(f"{r['syntax']:<14}{r['backend']:<20}{r['bytes'] / 1024:>7.0f}{first:>9.3f}{r['kernel_ms']:>8.3f}"
              f"{r['jpeg_ms']:>7.3f}{r['floor_1t_ms']:>8.3f}{r['floor_2t_ms_per_frame']:>8.3f}"
              f"{r['speedup_2t']:>6.2f}  {others}")
    text = json.dumps({"runs": args.runs, "results": results}, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
