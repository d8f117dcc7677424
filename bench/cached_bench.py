"""Warm-cache rendering benchmark: Tessera's cached rendered JPEG vs Orthanc 1.10.1, in one run.

A script, not a test. Both servers get the same J2K-lossless 512x512 CT series (the one
`render_bench.py` writes, 300 slices, reused from bench/work/render/). Then, with wrk as the load
generator (one wrk thread, a Lua script walking a list of frame URLs round-robin):

1. latency at concurrency 1 over the series' `/frames/1/rendered` URLs, Tessera vs Orthanc,
   interleaved A/B for `--rounds` rounds; the medians of the per-round medians, and their ratio;
2. cached rendered frames/s at concurrency 16 against Tessera (`--rounds` runs, median).

Done for each `--workers` value (default 1 and 2), each on a fresh Tessera. Tessera's cache is warmed
first (every frame fetched once, then a check that a second fetch is fast); Orthanc has no rendered
cache, so it is "warm" after one pass (files in its storage cache). Every response is checked by wrk:
non-2xx answers or socket errors make the run fail.

Why wrk: it is C, epoll, one thread; at 2-5k requests/s it uses a fraction of a core, which the
script measures (wrk's user+system CPU over the run, from getrusage of the child) and reports, as
well as the server processes' CPU. A Python client would need about as much CPU as the server.

    .venv/bin/python bench/cached_bench.py [--workers 1 2] [--rounds 5] [--seconds 8] [--slices 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.dicomweb_client_load import build_stow_bodies, stow_series
from bench.orthanc import orthanc
from bench.procs import free_port, listening_pid
from bench.render_bench import make_series
from bench.tessera_server import tessera
from bench.wrk import run_wrk

WORK = ROOT / "bench" / "work" / "cached"
OUT = ROOT / "bench" / "out"




def write_paths(name: str, prefix: str, series: Any) -> Path:
    path = WORK / f"paths-{name}.txt"
    path.write_text("".join(
        f"{prefix}/studies/{series.study_uid}/series/{series.series_uid}/instances/{sop}/frames/1/rendered\n"
        for sop in series.sop_uids))
    return path


def fetch_all(root: str, paths_file: Path) -> float:
    start = time.perf_counter()
    for p in paths_file.read_text().split():
        with urllib.request.urlopen(urllib.request.Request(root + p, headers={"Accept": "image/jpeg"}),
                                    timeout=60) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("image/jpeg"), p
            resp.read()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--skip-orthanc", action="store_true")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    series = make_series("j2k", args.slices)
    bodies = build_stow_bodies(series.files, 10)
    report: dict[str, Any] = {"series": f"j2k lossless {args.slices}x512x512", "load_generator": "wrk -t1 + Lua",
                              "runs": {}}
    with __import__("contextlib").ExitStack() as stack:
        o_root = o_paths = o_pid = None
        if not args.skip_orthanc:
            o_port = free_port()
            o_base = stack.enter_context(orthanc(WORK / "orthanc", http_port=o_port, sync_storage=False))
            o_root = o_base.rsplit("/dicom-web", 1)[0]
            stow_series(o_base, bodies, concurrency=4)
            o_paths = write_paths("orthanc", "/dicom-web", series)
            o_pid = listening_pid(o_port)
            print(f"Orthanc: one pass over the series {fetch_all(o_root, o_paths):.1f} s", flush=True)
        for workers in args.workers:
            t_port = free_port()
            with tessera(WORK / f"tessera-w{workers}", port=t_port, fsync=False, workers=workers) as t_base:
                t_root = t_base.rsplit("/dicomweb", 1)[0]
                stow_series(t_base, bodies, concurrency=4)
                t_paths = write_paths(f"tessera-w{workers}", "/dicomweb", series)
                t_pid = listening_pid(t_port)
                cold = fetch_all(t_root, t_paths)
                time.sleep(2)  # let the prefetcher finish
                warm = fetch_all(t_root, t_paths)
                print(f"Tessera w{workers}: first pass {cold:.1f} s, second pass {warm:.2f} s", flush=True)
                run: dict[str, Any] = {"c1_tessera": [], "c1_orthanc": [], "c16_tessera": []}
                for r in range(args.rounds):
                    t1 = run_wrk(t_root, t_paths, connections=1, seconds=args.seconds, server_pid=t_pid)
                    run["c1_tessera"].append(t1)
                    line = f"  round {r + 1}: Tessera c1 p50 {t1['p50_ms']:.3f} ms ({t1['rps']:.0f}/s)"
                    if o_root and o_paths is not None and o_pid is not None:
                        o1 = run_wrk(o_root, o_paths, connections=1, seconds=args.seconds, server_pid=o_pid)
                        run["c1_orthanc"].append(o1)
                        line += f", Orthanc c1 p50 {o1['p50_ms']:.2f} ms, ratio {o1['p50_ms'] / t1['p50_ms']:.1f}x"
                    t16 = run_wrk(t_root, t_paths, connections=16, seconds=args.seconds, server_pid=t_pid)
                    run["c16_tessera"].append(t16)
                    line += (f"; Tessera c16 {t16['rps']:.0f} frames/s p50 {t16['p50_ms']:.2f} p99 "
                             f"{t16['p99_ms']:.2f} ms (wrk CPU {t16['wrk_cpu_pct']:.0f}%, server CPU "
                             f"{t16['server_cpu_pct']:.0f}%)")
                    print(line, flush=True)
                med = statistics.median
                summary = {
                    "tessera_c1_p50_ms": med(x["p50_ms"] for x in run["c1_tessera"]),
                    "tessera_c16_fps": med(x["rps"] for x in run["c16_tessera"]),
                    "tessera_c16_p99_ms": med(x["p99_ms"] for x in run["c16_tessera"]),
                    "wrk_cpu_pct_c16": med(x["wrk_cpu_pct"] for x in run["c16_tessera"]),
                    "server_cpu_pct_c16": med(x["server_cpu_pct"] for x in run["c16_tessera"]),
                    "wrk_cpu_pct_c1": med(x["wrk_cpu_pct"] for x in run["c1_tessera"]),
                }
                if run["c1_orthanc"]:
                    summary["orthanc_c1_p50_ms"] = med(x["p50_ms"] for x in run["c1_orthanc"])
                    summary["ratio_median_of_rounds"] = med(
                        o["p50_ms"] / t["p50_ms"] for o, t in zip(run["c1_orthanc"], run["c1_tessera"]))
                run["summary"] = summary
                report["runs"][f"workers={workers}"] = run
                print(f"workers={workers}: " + json.dumps(summary), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "cached.json").write_text(json.dumps(report, indent=2))
    print("\n| workers | Tessera c1 p50 ms | Orthanc c1 p50 ms | ratio | Tessera c16 frames/s | c16 p99 ms | "
          "wrk CPU % | server CPU % |")
    print("|---|---|---|---|---|---|---|---|")
    for name, run in report["runs"].items():
        s = run["summary"]
        print(f"| {name.split('=')[1]} | {s['tessera_c1_p50_ms']:.3f} | {s.get('orthanc_c1_p50_ms', float('nan')):.2f} | "
              f"{s.get('ratio_median_of_rounds', float('nan')):.1f}x | {s['tessera_c16_fps']:.0f} | "
              f"{s['tessera_c16_p99_ms']:.2f} | {s['wrk_cpu_pct_c16']:.0f} | {s['server_cpu_pct_c16']:.0f} |")
    print(f"results: {OUT / 'cached.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
