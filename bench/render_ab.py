"""A/B of server settings for cold rendering at concurrency 16 (issue 3), rounds interleaved so the
shared host's drift hits every variant alike.

One syntax's 300-slice 512x512 CT from ``bench/render_bench.py`` (ingested once into
``bench/work/render_ab/<syntax>``); per round and variant a fresh ``tessera serve`` with the render
benchmark's cold settings plus the variant's ``TESSERA_*`` variables, 3 s of wrk warm-up, then
``--seconds`` of wrk with 16 connections cycling over every slice's ``.../frames/1/rendered``.
Prints frames/s, the server's CPU per request (from ``/proc``) and wrk's median and 99th percentile
latency per round, then medians. With ``--c1``, each round first also takes the concurrency-1 figure
of ``render_bench.run_c1`` (every slice, each request paired with an empty request and the direct
render of the same frame right before it): the median ms over the floor.

Run: .venv/bin/python bench/render_ab.py [--syntax jpegls] [--workers 1] [--rounds 3] [--seconds 10]
     [--c1] A= B=TESSERA_CPU_THREADS:2[,TESSERA_OTHER:value]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make `bench`, `archive` and `render` importable
    sys.path.insert(0, str(ROOT))

from bench.procs import exit_on_signals
from bench.render_bench import (
    COLD_ENV,
    frame_paths,
    ingest,
    make_series,
    render_one,
    run_c1,
    run_concurrent,
    stored_frames,
)
from bench.tessera_server import tessera
from render.params import RenderParams

WORK = ROOT / "bench" / "work" / "render_ab"


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, settings = text.partition("=")
    env = {}
    for item in filter(None, settings.split(",")):
        key, sep, value = item.partition(":")
        if not sep or not key.startswith("TESSERA_"):
            raise SystemExit(f"variant {text!r}: settings are TESSERA_NAME:value, comma-separated")
        env[key] = value
    return name, env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="NAME=TESSERA_X:v,TESSERA_Y:w (NAME= for the defaults)")
    parser.add_argument("--syntax", default="jpegls")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=8048)
    parser.add_argument("--c1", action="store_true", help="also the concurrency-1 figure over the floor")
    args = parser.parse_args(argv)
    exit_on_signals()
    variants = [parse_variant(v) for v in args.variants]
    series = make_series(args.syntax, 300)
    work = WORK / args.syntax
    marker = work / ".ingested"
    if not marker.exists():
        with tessera(work, port=args.port, fsync=False, workers=1, fresh=True, quiet=True, env=COLD_ENV) as base:
            ingest(base, [series])
        marker.touch()
    results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name, _ in variants}
    c1s: dict[str, list[float]] = {name: [] for name, _ in variants}
    floor = None
    if args.c1:  # the direct render of each frame, its stored bytes read once
        info, frames = stored_frames(series)
        floor = partial(render_one, frames, info, RenderParams())
    for r in range(args.rounds):
        for name, env in variants:
            with tessera(work, port=args.port, fsync=False, workers=args.workers, fresh=False, quiet=True,
                         env={**COLD_ENV, **env}) as base:
                paths = frame_paths(base, series)
                if floor is not None:
                    c1 = run_c1(base, paths, "/healthz", floor)["paired_over_floor_ms"]
                    c1s[name].append(c1)
                    print(f"round {r + 1} {name or 'defaults'}: c1 {c1:.3f} ms over the floor", flush=True)
                run_concurrent(base, paths, 16, 3)
                out = run_concurrent(base, paths, 16, args.seconds)
            fps, cpu = out["frames_per_s"], out["server_cpu_pct"]
            p50, p99 = out["latency_median_ms"], out["p99_ms"]
            results[name].append((fps, cpu * 10 / fps, p50, p99))
            print(f"round {r + 1} {name or 'defaults'}: {fps:.1f} frames/s, server {cpu:.0f}% of a core = "
                  f"{cpu * 10 / fps:.2f} ms CPU per request, wrk {out['client_cpu_pct']:.0f}%, latency "
                  f"p50 {p50:.1f} ms p99 {p99:.1f} ms", flush=True)
    for name, values in results.items():
        print(f"{name or 'defaults'}: median {statistics.median(v[0] for v in values):.1f} frames/s, "
              f"{statistics.median(v[1] for v in values):.2f} ms CPU per request, latency p50 "
              f"{statistics.median(v[2] for v in values):.1f} ms p99 {statistics.median(v[3] for v in values):.1f} ms"
              + (f", c1 {statistics.median(c1s[name]):.3f} ms over the floor" if c1s[name] else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
