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
import os
import re
import resource
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.dicomweb_client_load import build_stow_bodies, stow_series  # noqa: E402
from bench.orthanc import orthanc  # noqa: E402
from bench.procs import free_port  # noqa: E402
from bench.render_bench import make_series  # noqa: E402
from bench.tessera_server import tessera  # noqa: E402

WORK = ROOT / "bench" / "work" / "cached"
OUT = ROOT / "bench" / "out"

LUA = r"""
local paths = {}
for line in io.lines(os.getenv("WRK_PATHS")) do paths[#paths + 1] = line end
local counter = 0
local bad = 0
function setup(thread) thread:set("id", 0) end
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter - 1) % #paths + 1], {["Accept"] = "image/jpeg"})
end
response = function(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
done = function(summary, latency, requests)
  local out = io.open(os.getenv("WRK_JSON"), "w")
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %f, ' ..
    '"errors": %d, "status_errors": %d, "bytes": %d}',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.bytes))
  out:close()
end
"""


def server_cpu_seconds(pid: int) -> float:
    """user+system CPU of pid and its descendants (uvicorn workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for t in Path(f"/proc/{p}/task").iterdir():
                children = (t / "children").read_text().split()
                todo += [int(c) for c in children]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def listening_pid(port: int) -> int:
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
    pids = [int(p) for p in re.findall(r"pid=(\d+)", out)]
    return min(pids)


def run_wrk(root: str, paths_file: Path, *, connections: int, seconds: float, server_pid: int) -> dict[str, Any]:
    WORK.mkdir(parents=True, exist_ok=True)
    lua = WORK / "paths.lua"
    lua.write_text(LUA)
    out = WORK / "wrk.json"
    out.unlink(missing_ok=True)
    env = {**os.environ, "WRK_PATHS": str(paths_file), "WRK_JSON": str(out)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = server_cpu_seconds(server_pid)
    start = time.perf_counter()
    subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s", "--timeout", "10s", "-s", str(lua), root],
                   env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = server_cpu_seconds(server_pid) - server_before
    r = json.loads(out.read_text())
    if r["errors"] or r["status_errors"]:
        raise RuntimeError(f"wrk against {root}: {r['errors']} socket errors, {r['status_errors']} non-2xx")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    secs = r["duration_us"] / 1e6
    return {
        "rps": r["requests"] / secs,
        "p50_ms": r["p50_us"] / 1000,
        "p90_ms": r["p90_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "requests": r["requests"],
        "mean_body_kB": r["bytes"] / max(1, r["requests"]) / 1000,
        "wrk_cpu_pct": 100 * cpu / wall,
        "server_cpu_pct": 100 * server_cpu / secs,
    }


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
                    if o_root:
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
