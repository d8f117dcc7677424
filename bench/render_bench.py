"""Rendering benchmark (issue 3): cold rendered JPEG of every slice, Tessera against Orthanc, next to
the codec floor measured in the same run.

For each transfer syntax a 300-slice 512x512 CT (``archive.synth.write_series``, seed 1; each syntax
gets its own UIDs so all share one server) is ingested into Orthanc 1.10.1 and Tessera. Then, per
server and syntax, every slice's ``.../frames/1/rendered`` is requested once as image/jpeg (default
window, native size): first one request at a time (concurrency 1), then with 16 in flight. Nothing
is cached: Tessera has no render cache yet and Orthanc has none; each frame is asked for once per run.

Server time per frame at concurrency 1 is the client latency minus the latency of an empty request
(Tessera ``/healthz``, Orthanc ``/system``), medians over the series; for Tessera the handler time
it reports in ``Server-Timing: app;dur=`` is printed too (it excludes HTTP parsing and writing). The
time over the floor (the issue's "within 1 ms") pairs every request with an empty request and the
direct render of the same frame just before it, and takes the median of the per-frame differences.
The two-core ceiling a concurrent run is compared with is measured right before and right after it.

The codec floor is decode + kernel + JPEG encode done directly (no HTTP, no server) over the very
same 300 stored frames: median ms per frame on one thread, and wall ms per frame with two threads
(``bench/codec_floor.py``'s ``median_ms``-style timing and ``two_thread_ms``); ``codec_floor.measure``
on its reference frame is recorded as well. Tessera runs with ``--workers 1`` and ``--workers 2``.

Must not send traffic anywhere but 127.0.0.1. The server is reached over HTTP only; the floor
imports the render package directly (that is what a floor is).

Run: .venv/bin/python bench/render_bench.py [--slices 300] [--syntaxes j2k,jpegls] [--workers 1,2]
     [--only tessera|orthanc] [--out bench/out/render.json]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make `bench`, `archive` and `render` importable
    sys.path.insert(0, str(ROOT))

import pydicom
from pydicom.encaps import generate_frames
from pydicom.uid import generate_uid

from archive.synth import UID_ROOT, write_series
from bench import codec_floor
from bench.dicomweb_client_load import BenchCheckError, build_stow_bodies, stow_series
from bench.orthanc import orthanc
from bench.procs import exit_on_signals, free_port, listening_pid
from bench.tessera_server import tessera, tessera_available
from bench.wrk import run_wrk
from render import kernels
from render.codecs.base import NATIVE_SYNTAXES
from render.frameinfo import FrameInfo
from render.params import RenderParams
from render.pipeline import render_frame

WORK = ROOT / "bench" / "work" / "render"
SYNTAXES = ("explicit", "rle", "jpeg-lossless", "jpeg-extended", "jpegls", "j2k", "j2k-lossy", "htj2k")
#: Issue targets: J2K and JPEG-LS at >= 90% of the two-core ceiling at concurrency 16.
CEILING_TARGET_SYNTAXES = ("jpegls", "j2k", "j2k-lossy")
CONCURRENCY = 16
#: Tessera without prefetch or background HTJ2K renditions (nothing renders beside the timed requests).
QUIET_ENV = {"TESSERA_PREFETCH_NEIGHBOURS": "0", "TESSERA_RENDITIONS": "0"}
#: Cold means cold: no rendered or decoded cache either, so every request decodes the stored codestream.
COLD_ENV = {**QUIET_ENV, "TESSERA_CACHE_MEMORY_BYTES": "0", "TESSERA_DECODED_CACHE_BYTES": "0"}


@dataclass(frozen=True, slots=True)
class Series:
    syntax: str
    study_uid: str
    series_uid: str
    sop_uids: list[str]
    files: list[bytes]


def make_series(syntax: str, slices: int) -> Series:
    """Write (or reuse) the series of one syntax; same phantom (seed 1), UIDs of its own."""
    out_dir = WORK / f"series-{syntax}-{slices}x512x512-seed1"
    done = out_dir / ".complete"
    study = generate_uid(prefix=UID_ROOT, entropy_srcs=["tessera-render-bench", "study"])
    series_uid = generate_uid(prefix=UID_ROOT, entropy_srcs=["tessera-render-bench", syntax, str(slices)])
    if not done.exists():
        print(f"writing {slices}-slice 512x512 CT ({syntax}) into {out_dir}", flush=True)
        write_series(out_dir, modality="CT", rows=512, columns=512, slices=slices, syntax=syntax, seed=1,
                     study_uid=study, series_uid=series_uid)
        done.touch()
    paths = sorted(p for p in out_dir.glob("*.dcm"))
    if len(paths) != slices:
        raise RuntimeError(f"{out_dir} holds {len(paths)} files, expected {slices}")
    files = [p.read_bytes() for p in paths]
    sops = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths]
    return Series(syntax, study, series_uid, sops, files)


# --- codec floor over the series' own frames -----------------------------------------------------


def stored_frames(series: Series) -> tuple[FrameInfo, list[bytes]]:
    import io

    frames = []
    info = None
    for data in series.files:
        ds = pydicom.dcmread(io.BytesIO(data))
        ts = str(ds.file_meta.TransferSyntaxUID)
        info = FrameInfo.from_dataset(ds, ts)
        frames.append(bytes(ds.PixelData) if ts in NATIVE_SYNTAXES else next(generate_frames(ds.PixelData, number_of_frames=1)))
    assert info is not None
    return info, frames


def series_floor(series: Series) -> dict[str, float]:
    """Decode + kernel + JPEG q90 of every frame of the series, directly: median ms on one thread,
    and wall ms per frame with two threads sharing the frames (best of 3 rounds each)."""
    info, frames = stored_frames(series)
    params = RenderParams()
    for f in frames[:3]:
        render_frame(f, info, 0, params)
    one_rounds, per_frame = [], []
    for _ in range(3):
        times = []
        t_all = time.perf_counter()
        for f in frames:
            t0 = time.perf_counter()
            render_frame(f, info, 0, params)
            times.append(time.perf_counter() - t0)
        one_rounds.append((time.perf_counter() - t_all) / len(frames))
        per_frame.append(statistics.median(times))
    two = min(two_thread_ms(info, frames) for _ in range(3))
    return {"floor_1t_median_ms": min(per_frame) * 1000, "floor_1t_mean_ms": min(one_rounds) * 1000,
            "floor_2t_ms_per_frame": two}


def two_thread_ms(info: FrameInfo, frames: list[bytes]) -> float:
    """Wall ms per frame rendering ``frames`` directly on two threads (the two-core ceiling's floor)."""
    params = RenderParams()
    with ThreadPoolExecutor(2) as pool:
        t0 = time.perf_counter()
        list(pool.map(lambda f: render_frame(f, info, 0, params), frames))
        return (time.perf_counter() - t0) / len(frames) * 1000


# --- HTTP client ---------------------------------------------------------------------------------


class Conn:
    """One keep-alive HTTP/1.1 connection (http.client: far less client CPU per request than requests,
    which matters when the client shares the machine's two cores with the server)."""

    def __init__(self, base: str) -> None:
        u = urlsplit(base)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def get(self, path: str, accept: str = "image/jpeg") -> tuple[float, int, bytes, http.client.HTTPResponse]:
        t0 = time.perf_counter()
        self.conn.request("GET", path, headers={"Accept": accept})
        resp = self.conn.getresponse()
        body = resp.read()
        return time.perf_counter() - t0, resp.status, body, resp

    def close(self) -> None:
        self.conn.close()


def frame_paths(base: str, series: Series) -> list[str]:
    prefix = urlsplit(base).path
    return [f"{prefix}/studies/{series.study_uid}/series/{series.series_uid}/instances/{sop}/frames/1/rendered"
            for sop in series.sop_uids]


def baseline_ms(root: str, path: str, n: int = 300) -> float:
    conn = Conn(root)
    try:
        for _ in range(20):
            conn.get(path, accept="*/*")
        return statistics.median(conn.get(path, accept="*/*")[0] for _ in range(n)) * 1000
    finally:
        conn.close()


def _check(status: int, body: bytes, resp: http.client.HTTPResponse, path: str) -> None:
    if status != 200 or not body.startswith(b"\xff\xd8") or "image/jpeg" not in (resp.getheader("content-type") or ""):
        raise BenchCheckError(f"GET {path} answered {status} {resp.getheader('content-type')}: {body[:200]!r}")


def run_c1(base: str, paths: list[str], baseline_path: str, floor: Callable[[int], object]) -> dict[str, Any]:
    """One request at a time over every frame. Each frame's request is paired with an empty request
    and with the direct floor render of the same frame, taken right before it: the server's time
    over the floor is then the median of per-frame differences, which slow drifts of a shared
    machine (decoders 30% slower for a minute) cancel out of, unlike two medians taken minutes apart."""
    conn = Conn(base)
    lat, server_timing, sizes, over, floors = [], [], [], [], []
    try:
        for i, path in enumerate(paths):
            t0 = time.perf_counter()
            floor(i)
            floor_s = time.perf_counter() - t0
            empty_s = conn.get(baseline_path, accept="*/*")[0]
            sec, status, body, resp = conn.get(path)
            _check(status, body, resp, path)
            lat.append(sec * 1000)
            over.append((sec - empty_s - floor_s) * 1000)
            floors.append(floor_s * 1000)
            sizes.append(len(body))
            st = resp.getheader("server-timing")
            if st and "app;dur=" in st:
                server_timing.append(float(st.split("app;dur=")[1].split(",")[0]))
    finally:
        conn.close()
    out = {"latency_median_ms": statistics.median(lat), "latency_p90_ms": sorted(lat)[int(0.9 * len(lat))],
           "jpeg_kb_median": statistics.median(sizes) / 1024, "paired_over_floor_ms": statistics.median(over),
           "paired_floor_median_ms": statistics.median(floors)}
    if server_timing:
        out["server_timing_median_ms"] = statistics.median(server_timing)
    return out


def run_concurrent(base: str, paths: list[str], concurrency: int, seconds: float = 8.0) -> dict[str, Any]:
    """Frames/s with ``concurrency`` requests in flight, from wrk (C, one thread) cycling over the
    frame URLs: a Python client with 16 threads took about a third of the two cores it shares with
    the server, and capped both servers well below their codec ceilings."""
    parts = urlsplit(base)
    paths_file = WORK / f"paths-c{concurrency}-{parts.port}.txt"
    paths_file.write_text("".join(p + "\n" for p in paths))
    r = run_wrk(f"{parts.scheme}://{parts.netloc}", paths_file, connections=concurrency, seconds=seconds,
                server_pid=listening_pid(int(parts.port or 80)))
    return {"frames_per_s": r["rps"], "latency_median_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "client_cpu_pct": r["wrk_cpu_pct"], "server_cpu_pct": r["server_cpu_pct"]}


# --- orchestration -------------------------------------------------------------------------------


def ingest(base: str, all_series: list[Series]) -> float:
    files = [f for s in all_series for f in s.files]
    result = stow_series(base, build_stow_bodies(files, 10), concurrency=4)
    return result.per_second


def render_one(frames: list[bytes], info: FrameInfo, params: RenderParams, i: int) -> None:
    render_frame(frames[i], info, 0, params)


def measure_server(name: str, base: str, baseline_path: str, all_series: list[Series]) -> dict[str, Any]:
    root = base.rsplit("/", 1)[0]
    base_ms = baseline_ms(root, baseline_path)
    print(f"  {name}: empty request ({baseline_path}) {base_ms:.3f} ms", flush=True)
    out: dict[str, Any] = {"baseline_ms": base_ms, "syntaxes": {}}
    params = RenderParams()
    for series in all_series:
        paths = frame_paths(base, series)
        info, frames = stored_frames(series)
        try:
            c1 = run_c1(base, paths, baseline_path, partial(render_one, frames, info, params))
        except BenchCheckError as exc:  # e.g. Orthanc 1.10.1 cannot decode HTJ2K
            out["syntaxes"][series.syntax] = {"error": str(exc)[-300:]}
            print(f"  {name:<10} {series.syntax:<14} cannot render: {str(exc)[-160:]}", flush=True)
            continue
        c1["server_ms"] = c1["latency_median_ms"] - base_ms
        # The ceiling is measured right before and right after the concurrent run, so a machine
        # whose speed drifts (decoders 30% slower for minutes here) changes both sides of the ratio.
        before = two_thread_ms(info, frames)
        c16 = run_concurrent(base, paths, CONCURRENCY)
        after = two_thread_ms(info, frames)
        c16["floor_2t_around_ms"] = (before + after) / 2
        c16["floor_2t_before_after_ms"] = [before, after]
        out["syntaxes"][series.syntax] = {"c1": c1, "c16": c16}
        st = f", Server-Timing {c1['server_timing_median_ms']:.2f}" if "server_timing_median_ms" in c1 else ""
        print(f"  {name:<10} {series.syntax:<14} c1 {c1['latency_median_ms']:7.2f} ms (server {c1['server_ms']:.2f}{st},"
              f" paired over the floor {c1['paired_over_floor_ms']:.2f} (floor {c1['paired_floor_median_ms']:.2f}))"
              f"   c{CONCURRENCY} {c16['frames_per_s']:7.1f} frames/s", flush=True)
    return out


def print_table(report: dict[str, Any]) -> None:
    servers = list(report["servers"])
    print("\nc1 = concurrency 1, median server ms per frame (latency - empty request); c1-floor = median per frame of"
          " (latency - empty request - floor of that frame, each taken right before it);\nfloor = direct decode+kernel+"
          "JPEG on the same frames, one thread;\nc16 = frames/s with 16 in flight; ceiling = 1000 / two-thread floor "
          "ms per frame;\n/ceil = c16 / the ceiling measured right before and after that c16 run (mean)")
    head = f"{'syntax':<14}{'floor1t':>8}{'floor2t':>8}{'ceiling':>8}"
    for s in servers:
        head += f" |{s[:11]:>11}{'c1-floor':>9}{'c16':>8}{'/ceil':>6}"
    head += f" |{'T/O j2k+':>9}"
    print(head)
    for syntax, fl in report["floor"].items():
        ceiling = 1000 / fl["floor_2t_ms_per_frame"]
        line = f"{syntax:<14}{fl['floor_1t_median_ms']:>8.2f}{fl['floor_2t_ms_per_frame']:>8.2f}{ceiling:>8.0f}"
        for s in servers:
            r = report["results"][s]["syntaxes"][syntax]
            if "error" in r:
                line += f" |{'cannot render':>34}"
                continue
            line += (f" |{r['c1']['server_ms']:>11.2f}{r['c1']['paired_over_floor_ms']:>9.2f}"
                     f"{r['c16']['frames_per_s']:>8.0f}{r['c16']['frames_per_s'] * r['c16']['floor_2t_around_ms'] / 1000:>6.2f}")
        if "orthanc" in servers and "error" not in report["results"]["orthanc"]["syntaxes"][syntax]:
            best = max((s for s in servers if s.startswith("tessera")),
                       key=lambda s: report["results"][s]["syntaxes"][syntax]["c16"]["frames_per_s"], default=None)
            if best:
                ratio = (report["results"][best]["syntaxes"][syntax]["c16"]["frames_per_s"]
                         / report["results"]["orthanc"]["syntaxes"][syntax]["c16"]["frames_per_s"])
                line += f" |{ratio:>9.2f}"
        print(line)


def targets(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in (s for s in report["servers"] if s.startswith("tessera")):
        res = report["results"][s]["syntaxes"]
        c1 = {syn: round(res[syn]["c1"]["paired_over_floor_ms"], 3) for syn in res if "c1" in res[syn]}
        ceil = {syn: round(res[syn]["c16"]["frames_per_s"] * res[syn]["c16"]["floor_2t_around_ms"] / 1000, 3)
                for syn in res if syn in CEILING_TARGET_SYNTAXES and "c16" in res[syn]}
        out[s] = {"c1_minus_floor_ms": c1, "c1_within_1ms": all(v <= 1.0 for v in c1.values()),
                  "c16_fraction_of_ceiling": ceil, "c16_at_least_90pct": all(v >= 0.9 for v in ceil.values())}
        if "orthanc" in report["results"] and "j2k" in res:
            ratio = res["j2k"]["c16"]["frames_per_s"] / report["results"]["orthanc"]["syntaxes"]["j2k"]["c16"]["frames_per_s"]
            out[s]["j2k_vs_orthanc"] = round(ratio, 3)
            out[s]["j2k_at_least_1.2x_orthanc"] = ratio >= 1.2
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--syntaxes", default=",".join(SYNTAXES))
    parser.add_argument("--workers", default="1,2", help="Tessera --workers values to run, comma-separated")
    parser.add_argument("--only", choices=("orthanc", "tessera"), default=None)
    parser.add_argument("--orthanc-port", type=int, default=0, help="0: a free port (the machine is shared)")
    parser.add_argument("--tessera-port", type=int, default=0, help="0: a free port")
    parser.add_argument("--floor-runs", type=int, default=30, help="runs for codec_floor.measure")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "render.json")
    args = parser.parse_args(argv)
    exit_on_signals()
    args.orthanc_port = args.orthanc_port or free_port()
    args.tessera_port = args.tessera_port or free_port()
    syntaxes = [s.strip() for s in args.syntaxes.split(",") if s.strip()]
    all_series = [make_series(s, args.slices) for s in syntaxes]

    kernels.warm_up()
    print("codec floor (direct, no server) on the series' frames:", flush=True)
    floor = {}
    reference = {}
    for series in all_series:
        floor[series.syntax] = series_floor(series)
        reference[series.syntax] = codec_floor.measure(series.syntax, RenderParams(), args.floor_runs)
        f = floor[series.syntax]
        print(f"  {series.syntax:<14} 1 thread {f['floor_1t_median_ms']:.2f} ms (mean {f['floor_1t_mean_ms']:.2f}),"
              f" 2 threads {f['floor_2t_ms_per_frame']:.2f} ms/frame;  codec_floor.measure: "
              f"{reference[series.syntax]['floor_1t_ms']:.2f} / {reference[series.syntax]['floor_2t_ms_per_frame']:.2f}",
              flush=True)

    results: dict[str, Any] = {}
    ingest_rates: dict[str, float] = {}
    if args.only in (None, "orthanc"):
        with orthanc(WORK / "orthanc", http_port=args.orthanc_port, sync_storage=False, quiet=True) as base:
            ingest_rates["orthanc"] = ingest(base, all_series)
            results["orthanc"] = measure_server("orthanc", base, "/system", all_series)
    if args.only in (None, "tessera") and tessera_available():
        # Cold (COLD_ENV): every request decodes, the codec-level figure this benchmark is about.
        for i, workers in enumerate(int(w) for w in args.workers.split(",")):
            name = f"tessera-w{workers}"
            # The first start ingests on fresh storage; later ones (other --workers) reuse it.
            with tessera(WORK / "tessera", port=args.tessera_port, fsync=False, workers=workers,
                         fresh=i == 0, quiet=True, env=COLD_ENV) as base:
                if i == 0:
                    ingest_rates["tessera"] = ingest(base, all_series)
                results[name] = measure_server(name, base, "/healthz", all_series)

    report = {
        "benchmark": "render", "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "servers": list(results), "floor": floor, "codec_floor_reference": reference,
        "ingest_per_s": ingest_rates, "results": results,
    }
    if results:
        print_table(report)
        report["targets"] = targets(report)
        print("\ntargets:", json.dumps(report["targets"], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
