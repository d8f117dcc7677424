"""Where a rendered frame's CPU goes in one Tessera process (issue 3): the event loop's thread against
the CPU pool's threads, per request, and what the same event-loop work costs when it runs in short
bursts rather than back to back.

On the render benchmark's 300-slice 512x512 JPEG-LS CT (``bench/render_bench.py``'s series), one
server process (``--workers 1``), wrk (``bench/wrk.py``) cycling over every slice's
``.../frames/1/rendered`` (image/jpeg, default window):

- cold, 16 in flight: caches off as in the render benchmark, so every request decodes;
- the same with ``TESSERA_CPU_HOLD_MS=0``: each finished frame handed to the event loop at once,
  rather than several per wake-up while a round of jobs waits (``web/cpupool.py``);
- cached, 16 in flight: the rendered-image memory cache on and warmed, so only the event loop works;
- cached, paced: the same requests on 2 connections, each pausing ``--pause-ms`` before every request
  (a few hundred requests/s, about the cold run's rate): the same event-loop work per request, done
  in short bursts with the thread asleep in between.

CPU per thread from ``/proc/PID/task/TID/schedstat`` (nanoseconds the scheduler ran it, exact, unlike
the 10 ms ticks of ``stat``), divided by the requests wrk completed. The one-thread codec floor of the
same frames (``render_bench.series_floor``) is printed beside them.

Then, in this process without a server:

- the app without HTTP: the same cold requests (caches off) sent straight into the ASGI application
  built as ``tessera serve`` builds it, on the same stored series, 16 in flight from a uvloop event
  loop (``--inproc-requests`` of them after a warm-up): the event loop thread's CPU per request
  (``time.thread_time``), the process's, and requests/s. What the loop spends here is Tessera's own
  request path (security, audit, routing, record lookup, validators, the pool trip, the response
  object), with no HTTP server to blame;
- the event loop thread's CPU per CPU-pool job (an empty function, 16 awaiting at a time, best of 3
  rounds of 20,000) through ``ThreadPoolExecutor`` + ``asyncio.wrap_future`` and through
  ``web.cpupool.CpuPool``.

Run: .venv/bin/python bench/loop_cost.py [--seconds 10] [--pause-ms 4] [--inproc-requests 2500]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make `bench`, `archive` and `render` importable
    sys.path.insert(0, str(ROOT))

from bench.procs import exit_on_signals, listening_pid, thread_ns
from bench.render_bench import COLD_ENV, QUIET_ENV, Series, frame_paths, ingest, make_series, series_floor
from bench.tessera_server import tessera
from bench.wrk import run_wrk
from web.cpupool import CpuPool

WORK = ROOT / "bench" / "work" / "loop_cost"


def measure(base: str, series: Series, *, connections: int, seconds: float, pause_ms: int) -> dict[str, Any]:
    port = int(base.split(":")[2].split("/")[0])
    pid = listening_pid(port)
    paths_file = WORK / "paths.txt"
    paths_file.write_text("".join(p + "\n" for p in frame_paths(base, series)))
    root = base.rsplit("/", 1)[0]
    run_wrk(root, paths_file, connections=connections, seconds=3, server_pid=pid, delay_ms=pause_ms)  # warm-up
    before = thread_ns(pid)
    r = run_wrk(root, paths_file, connections=connections, seconds=seconds, server_pid=pid, delay_ms=pause_ms)
    after = thread_ns(pid)
    n = r["requests"]
    spent = {tid: (after[tid] - before.get(tid, 0)) / 1e6 / n for tid in after}
    loop = spent.pop(pid, 0.0)  # the main thread (its id is the process id) runs the event loop
    busy = sorted((v for v in spent.values() if v > 0.01), reverse=True)
    return {"requests_per_s": r["rps"], "loop_ms": loop, "other_threads_ms": sum(busy),
            "busiest_other_threads_ms": busy[:4], "server_cpu_pct": r["server_cpu_pct"]}


def pool_trip_us(kind: str, trips: int = 20_000, concurrency: int = 16) -> float:
    """Event-loop thread CPU (microseconds) per job handed to a 3-thread pool and awaited."""

    async def rounds() -> float:
        executor = ThreadPoolExecutor(3) if kind == "executor" else None
        pool = CpuPool(3, "trip") if kind == "cpupool" else None

        def job() -> None:
            return None

        def trip() -> Awaitable[None]:
            if executor is not None:
                return asyncio.wrap_future(executor.submit(job))
            assert pool is not None
            return pool.submit(job)

        async def worker(n: int, go: Callable[[], Awaitable[None]]) -> None:
            for _ in range(n):
                await go()

        best = float("inf")
        for _ in range(4):  # the first round warms up
            t0 = time.thread_time()
            await asyncio.gather(*(worker(trips // concurrency, trip) for _ in range(concurrency)))
            best = min(best, (time.thread_time() - t0) / trips * 1e6)
        if executor is not None:
            executor.shutdown()
        if pool is not None:
            pool.shutdown()
        return best

    import uvloop  # uvicorn's loop, as the server runs

    return uvloop.run(rounds())


def in_process(data: Path, series: Series, *, requests: int, concurrency: int = 16) -> dict[str, float]:
    """Cold rendered-frame requests sent straight into the ASGI app (no HTTP server) from a uvloop
    loop in this process: event-loop thread and process CPU per request (ms), requests/s."""
    from web.app import create_app
    from web.cli import build_archive
    from web.settings import Settings

    settings = Settings.from_env({**COLD_ENV, "TESSERA_ANONYMOUS_ROLE": "admin"}, data=data, host="127.0.0.1")
    app = create_app(settings, build_archive(settings))
    paths = frame_paths("http://127.0.0.1/dicomweb", series)

    async def get(path: str) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"127.0.0.1"), (b"accept", b"*/*")], "client": ("127.0.0.1", 50000),
                 "server": ("127.0.0.1", 80), "state": {}}
        status = 0

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, send)
        if status != 200:
            raise RuntimeError(f"{path}: status {status}")

    async def run() -> dict[str, float]:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        lifespan = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                             inbox.get, outbox.put))
        await inbox.put({"type": "lifespan.startup"})
        started = await outbox.get()
        if started["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"start-up failed: {started}")

        async def worker(first: int, count: int) -> None:
            for k in range(first, count, concurrency):
                await get(paths[k % len(paths)])

        await asyncio.gather(*(worker(i, 2 * concurrency) for i in range(concurrency)))  # warm-up
        t0, p0, w0 = time.thread_time(), time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(i, requests) for i in range(concurrency)))
        t1, p1, w1 = time.thread_time(), time.process_time(), time.perf_counter()
        await inbox.put({"type": "lifespan.shutdown"})
        await lifespan
        return {"requests_per_s": requests / (w1 - w0), "loop_ms": (t1 - t0) / requests * 1e3,
                "process_ms": (p1 - p0) / requests * 1e3}

    import uvloop

    return uvloop.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pause-ms", type=int, default=4)
    parser.add_argument("--port", type=int, default=8047)
    parser.add_argument("--inproc-requests", type=int, default=2500)
    args = parser.parse_args(argv)
    exit_on_signals()
    WORK.mkdir(parents=True, exist_ok=True)
    series = make_series("jpegls", 300)
    floor = series_floor(series)
    rows = []
    for i, (name, env, connections, pause) in enumerate((
        ("cold, 16 in flight", COLD_ENV, 16, 0),
        ("cold, results one by one", {**COLD_ENV, "TESSERA_CPU_HOLD_MS": "0"}, 16, 0),
        ("cached, 16 in flight", QUIET_ENV, 16, 0),
        ("cached, paced", QUIET_ENV, 2, args.pause_ms),
    )):
        with tessera(WORK / "tessera", port=args.port, fsync=False, workers=1, fresh=i == 0, quiet=True,
                     env=env) as base:
            if i == 0:
                ingest(base, [series])
            rows.append((name, measure(base, series, connections=connections, seconds=args.seconds,
                                       pause_ms=pause)))
    print(f"\nJPEG-LS 512x512, codec floor one thread {floor['floor_1t_median_ms']:.2f} ms, two threads "
          f"{floor['floor_2t_ms_per_frame']:.2f} ms/frame ({2 * floor['floor_2t_ms_per_frame']:.2f} ms of a core)")
    print(f"{'run':<24}{'req/s':>8}{'loop ms/req':>13}{'others ms/req':>15}  busiest other threads ms/req")
    for name, m in rows:
        others = ", ".join(f"{v:.2f}" for v in m["busiest_other_threads_ms"])
        print(f"{name:<24}{m['requests_per_s']:>8.0f}{m['loop_ms']:>13.3f}{m['other_threads_ms']:>15.3f}  {others}")
    m = in_process(WORK / "tessera" / "data", series, requests=args.inproc_requests)
    print(f"{'cold, no HTTP (in-process)':<24}{m['requests_per_s']:>8.0f}{m['loop_ms']:>13.3f}"
          f"{m['process_ms'] - m['loop_ms']:>15.3f}  (one process, the app called directly)")
    print("\nevent-loop CPU per pool job, microseconds: "
          + ", ".join(f"{kind} {pool_trip_us(kind):.1f}" for kind in ("executor", "cpupool")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
