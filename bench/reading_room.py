"""Reading-room load test: Tessera under `bench/locustfile.py`, with its resident memory sampled.

A script, not a test. It writes (once, reused afterwards) four synthetic 512x512 studies with
archive.synth under bench/work/reading/, starts a fresh Tessera on loopback (optionally with Redis),
stores the studies with STOW-RS, runs locust headless for the given users and duration, samples the
resident memory (VmRSS) of the server process and all its children every `--sample` seconds, and
prints: requests/s, p50/p95/p99, failures (all requests, and per request name), and RSS.

Memory is judged after a warm-up (`--warmup`, default 60 s of the same load): RSS "start" is the
first sample at or after the warm-up, "end" the last sample, "max" the largest sample after the
warm-up; flat means (max - start) / start <= 10 %. Before the warm-up the caches fill from empty, so
growth there is expected and reported separately (RSS before load).

    .venv/bin/python bench/reading_room.py [--users 50] [--duration 300] [--workers 1] [--redis]

Results: bench/out/reading_room.json, locust's CSVs bench/out/reading_room_*.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.dicomweb_client_load import build_stow_bodies, stow_series
from bench.procs import free_port, listening_pid
from bench.tessera_server import tessera

if TYPE_CHECKING:
    from archive.synth import Modality

WORK = ROOT / "bench" / "work" / "reading"
OUT = ROOT / "bench" / "out"
LOCUST = ROOT / ".venv" / "bin" / "locust"
#: (modality, slices, syntax, seed): a mix of lossless J2K (expensive to render cold) and uncompressed.
STUDIES: tuple[tuple[Modality, int, str, int], ...] = (("CT", 300, "j2k", 11), ("CT", 200, "explicit", 12), ("MR", 150, "j2k", 13), ("CT", 120, "explicit", 14))


def study_files() -> list[bytes]:
    from archive.synth import write_series

    files: list[bytes] = []
    for modality, slices, syntax, seed in STUDIES:
        out = WORK / f"{modality}-{slices}-{syntax}-seed{seed}"
        if not (out / ".complete").exists():
            print(f"writing {modality} {slices}x512x512 {syntax} (seed {seed}) into {out}", flush=True)
            write_series(out, modality=modality, rows=512, columns=512, slices=slices, syntax=syntax, seed=seed,
                         patient_id=f"READ{seed:04d}", patient_name=f"READING^ROOM{seed}")
            (out / ".complete").touch()
        files += [p.read_bytes() for p in sorted(out.glob("*.dcm"))]
    return files


def tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (t / "children").read_text().split()]
        except FileNotFoundError:
            pass
    return out


def rss_bytes(pid: int) -> int:
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except FileNotFoundError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except FileNotFoundError:
            pass
    return total


def parent_of(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1])


def read_stats(prefix: Path) -> list[dict[str, str]]:
    with open(f"{prefix}_stats.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--spawn-rate", type=float, default=5.0)
    parser.add_argument("--duration", type=int, default=300, help="seconds of load, warm-up included")
    parser.add_argument("--warmup", type=int, default=60)
    parser.add_argument("--sample", type=float, default=5.0, help="RSS sampling period, seconds")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--redis", nargs="?", const="redis://127.0.0.1:6379/0", default="",
                        help="TESSERA_REDIS_URL (default URL when given without a value)")
    args = parser.parse_args(argv)
    files = study_files()
    if args.redis:
        os.environ["TESSERA_REDIS_URL"] = args.redis
    else:
        os.environ.pop("TESSERA_REDIS_URL", None)
    port = free_port()
    OUT.mkdir(parents=True, exist_ok=True)
    prefix = OUT / "reading_room"
    with tessera(WORK / "tessera", port=port, fsync=False, workers=args.workers) as base:
        root = base.rsplit("/dicomweb", 1)[0]
        result = stow_series(base, build_stow_bodies(files, 10), concurrency=4)
        print(f"stored {result.instances} instances in {result.seconds:.1f} s", flush=True)
        pid = listening_pid(port)
        if args.workers > 1:  # workers listen on the master's socket: sample the master's whole tree
            pid = parent_of(pid) if "tessera" in Path(f"/proc/{parent_of(pid)}/cmdline").read_text() else pid
        rss_before = rss_bytes(pid)
        samples: list[tuple[float, int]] = []
        stop = threading.Event()
        cmd = [str(LOCUST), "-f", str(ROOT / "bench" / "locustfile.py"), "--headless", "-u", str(args.users),
               "-r", str(args.spawn_rate), "-t", f"{args.duration}s", "--host", root, "--csv", str(prefix),
               "--only-summary", "--stop-timeout", "10"]
        env = {**os.environ, "READING_FPS": str(args.fps)}
        log = (WORK / "locust.log").open("wb")
        cpu0 = cpu_seconds(pid)
        t0 = time.monotonic()
        locust = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)

        def sampler() -> None:
            while not stop.is_set():
                samples.append((time.monotonic() - t0, rss_bytes(pid)))
                stop.wait(args.sample)

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        locust_cpu = 0.0
        while locust.poll() is None:
            try:
                locust_cpu = cpu_seconds(locust.pid)
            except (FileNotFoundError, ProcessLookupError):
                pass
            time.sleep(1)
        wall = time.monotonic() - t0
        stop.set()
        thread.join()
        server_cpu = cpu_seconds(pid) - cpu0
        log.close()
    rows = read_stats(prefix)
    total = next(r for r in rows if r["Name"] == "Aggregated")
    after = [(t, r) for t, r in samples if t >= args.warmup]
    start_rss = after[0][1] if after else samples[0][1]
    end_rss = samples[-1][1]
    max_rss = max(r for _t, r in after) if after else max(r for _t, r in samples)
    mb = 1 / (1 << 20)
    summary: dict[str, Any] = {
        "users": args.users, "duration_s": args.duration, "workers": args.workers, "redis": bool(args.redis),
        "fps_per_reader": args.fps,
        "requests": int(total["Request Count"]), "failures": int(total["Failure Count"]),
        "req_per_s": float(total["Requests/s"]),
        "p50_ms": float(total["50%"]), "p95_ms": float(total["95%"]), "p99_ms": float(total["99%"]),
        "rss_before_load_MB": rss_before * mb, "rss_start_MB": start_rss * mb, "rss_end_MB": end_rss * mb,
        "rss_max_MB": max_rss * mb,
        "rss_change_end_pct": 100 * (end_rss - start_rss) / start_rss,
        "rss_change_max_pct": 100 * (max_rss - start_rss) / start_rss,
        "server_cpu_pct": 100 * server_cpu / wall, "locust_cpu_pct": 100 * locust_cpu / wall,
        "locust_exit_code": locust.returncode,
        "per_name": {r["Name"]: {"requests": int(r["Request Count"]), "failures": int(r["Failure Count"]),
                                 "req_per_s": float(r["Requests/s"]), "p50_ms": float(r["50%"]),
                                 "p95_ms": float(r["95%"]), "p99_ms": float(r["99%"])}
                     for r in rows if r["Name"] != "Aggregated"},
        "rss_samples_MB": [(round(t, 1), round(r * mb, 1)) for t, r in samples],
    }
    (OUT / "reading_room.json").write_text(json.dumps(summary, indent=2))
    print(f"\nreading room: {args.users} readers, {args.duration} s, workers={args.workers}, "
          f"redis={'yes' if args.redis else 'no'}, {args.fps:g} frames/s per reader while scrolling")
    print(f"requests {summary['requests']}, {summary['req_per_s']:.1f} req/s, p50 {summary['p50_ms']:.0f} ms, "
          f"p95 {summary['p95_ms']:.0f} ms, p99 {summary['p99_ms']:.0f} ms, failures {summary['failures']}")
    print("| request | count | req/s | p50 ms | p95 ms | p99 ms | failures |\n|---|---|---|---|---|---|---|")
    for name, r in summary["per_name"].items():
        print(f"| {name} | {r['requests']} | {r['req_per_s']:.1f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | "
              f"{r['p99_ms']:.0f} | {r['failures']} |")
    print(f"RSS (server and workers): before load {summary['rss_before_load_MB']:.0f} MB; after {args.warmup} s "
          f"warm-up: start {summary['rss_start_MB']:.0f} MB, end {summary['rss_end_MB']:.0f} MB, max "
          f"{summary['rss_max_MB']:.0f} MB; change end {summary['rss_change_end_pct']:+.1f} %, max "
          f"{summary['rss_change_max_pct']:+.1f} % ({'flat' if summary['rss_change_max_pct'] <= 10 else 'NOT flat'} "
          f"by the 10 % rule)")
    print(f"CPU: server {summary['server_cpu_pct']:.0f} %, locust {summary['locust_cpu_pct']:.0f} % (of one core)")
    print(f"results: {OUT / 'reading_room.json'}, {prefix}_stats.csv")
    return 0 if summary["failures"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
