"""wrk as the load generator of the HTTP benchmarks: C, one thread, event-driven, so it leaves the
two cores to the server under test. A Lua script cycles over a file of URL paths and writes wrk's
summary as JSON; any socket error or non-2xx answer fails the run.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from pathlib import Path
from typing import Any

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



def run_wrk(root: str, paths_file: Path, *, connections: int, seconds: float, server_pid: int,
            delay_ms: int = 0) -> dict[str, Any]:
    """wrk over the paths in ``paths_file``; ``delay_ms`` paces each connection (a pause before each
    request) for a fixed, lower request rate."""
    work = paths_file.parent
    lua = work / "paths.lua"
    lua.write_text(LUA + (f"delay = function() return {delay_ms} end\n" if delay_ms else ""))
    out = work / "wrk.json"
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


