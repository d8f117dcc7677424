"""Process helpers shared by the benchmark server harnesses.

Responsible for: picking free loopback ports, polling an HTTP endpoint until it answers (with a
deadline, never a fixed sleep), checking with `ss -ltnp` that a process listens on loopback only, and
stopping a child process. Must not know anything about a particular server.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

LOOPBACK_HOSTS = ("127.0.0.1", "[::1]", "::1")


class ServerStartError(RuntimeError):
    """A benchmark server did not come up (exited, or missed its deadline)."""


class NotLoopbackError(RuntimeError):
    """A benchmark server listens on an address other than loopback."""


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """True when something already listens on `port` (any address), according to `ss`."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True)
    return bool(out.stdout.strip())


def wait_http_ok(url: str, proc: subprocess.Popen[bytes], *, deadline_s: float = 30.0) -> float:
    """Poll `url` until it answers 200; return the seconds it took.

    Raises ServerStartError when `proc` exits first or the deadline passes.
    """
    start = time.monotonic()
    delay = 0.02
    last_error = "no answer yet"
    while time.monotonic() - start < deadline_s:
        if proc.poll() is not None:
            raise ServerStartError(f"server exited with code {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2.0) as resp:
                if resp.status == 200:
                    return time.monotonic() - start
                last_error = f"status {resp.status}"
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last_error = str(exc)
        time.sleep(delay)  # back-off between polls, not a wait for readiness
        delay = min(delay * 1.5, 0.25)
    raise ServerStartError(f"{url} did not answer 200 within {deadline_s:.0f} s ({last_error})")


@dataclass(frozen=True, slots=True)
class ListenSocket:
    """One listening TCP socket of a process, as `ss -ltnp` shows it."""

    local: str  # "127.0.0.1:8042" or "[::1]:8042"
    line: str  # the raw `ss` line, for printing

    @property
    def host(self) -> str:
        return self.local.rsplit(":", 1)[0]


def _descendant_pids(pid: int) -> set[int]:
    """`pid` and every process below it (uvicorn workers listen in children)."""
    pids = {pid}
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = _ppid(int(entry))
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in pids:
                pids.add(child)
                todo.append(child)
    return pids


def listening_sockets(pid: int) -> list[ListenSocket]:
    """Listening TCP sockets owned by `pid` or its descendants (needs root to see other users)."""
    pids = _descendant_pids(pid)
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            found.append(ListenSocket(local=line.split()[3], line=" ".join(line.split())))
    return found


def thread_ns(pid: int) -> dict[int, int]:
    """Nanoseconds on a CPU so far, per thread of ``pid`` (``/proc/PID/task/TID/schedstat``: what the
    scheduler ran it, exact, unlike the 10 ms ticks of ``stat``). Raises FileNotFoundError when the
    process is gone; a thread ending meanwhile is left out."""
    out = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as fh:
                out[int(task)] = int(fh.read().split()[0])
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue
    return out


def tree_cpu_ns(pid: int) -> dict[tuple[int, int], int]:
    """``thread_ns`` of `pid` and its descendants, by (pid, tid). Compare two readings over the
    threads in both: one that ended between them takes its time with it."""
    out: dict[tuple[int, int], int] = {}
    for p in _descendant_pids(pid):
        try:
            out.update(((p, tid), ns) for tid, ns in thread_ns(p).items())
        except OSError:  # the process ended meanwhile
            continue
    return out


def wait_settled(proc: subprocess.Popen[bytes], port: int, listeners: int, *, deadline_s: float = 30.0,
                 window_s: float = 0.25, busy_pct: float = 10.0) -> float:
    """Wait until `listeners` processes listen on `port` and the process tree of `proc` has used
    under `busy_pct` % of a core over `window_s`: a server whose first worker answers while the
    others still start (imports, kernels, parser processes) is not yet the server being measured.
    Returns the seconds waited; raises ServerStartError when `proc` exits meanwhile; past the
    deadline it gives up with a warning (a server that never goes quiet is measured as it is)."""
    start = time.perf_counter()
    while True:
        listening = len(listening_pids(port))
        before = tree_cpu_ns(proc.pid)
        time.sleep(window_s)  # the measurement window, not a guess at a start-up time
        after = tree_cpu_ns(proc.pid)
        if proc.poll() is not None:
            raise ServerStartError(f"the server (pid {proc.pid}) exited with status {proc.returncode} while "
                                   f"its workers started")
        used = sum(after[k] - before[k] for k in after.keys() & before.keys())
        busy = used / (window_s * 1e9) * 100
        waited = time.perf_counter() - start
        if listening >= listeners and busy < busy_pct:
            return waited
        if waited > deadline_s:
            print(f"warning: after {waited:.0f} s {listening} of {listeners} workers listen on :{port} and the "
                  f"server uses {busy:.0f}% of a core; measuring anyway", flush=True)
            return waited


def check_loopback_only(pid: int, name: str, *, quiet: bool = False) -> list[ListenSocket]:
    """Print the `ss -ltnp` lines of `pid` and raise NotLoopbackError if any is not loopback."""
    sockets = listening_sockets(pid)
    if not sockets:
        raise NotLoopbackError(f"{name} (pid {pid}) has no listening socket in `ss -ltnp`")
    bad = [s for s in sockets if s.host not in LOOPBACK_HOSTS]
    if not quiet or bad:
        print(f"listen check ({name}, pid {pid}, `ss -ltnp`):")
        for sock in sockets:
            print(f"  {'ok ' if sock.host in LOOPBACK_HOSTS else 'BAD'} {sock.line}")
    if bad:
        raise NotLoopbackError(f"{name} listens beyond loopback: {[s.local for s in bad]}")
    return sockets


def exit_on_signals() -> None:
    """Turn SIGTERM and SIGINT into exceptions, so `with` blocks stop the servers we started.

    SIGINT is reset explicitly because a shell starts background jobs with it ignored.
    """
    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def stop_process(proc: subprocess.Popen[bytes], *, grace_s: float = 10.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it after `grace_s`."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # our own group: start_new_session=True at spawn
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace_s)


def listening_pid(port: int) -> int:
    """The pid listening on ``port`` on this machine; for a server whose worker processes each listen
    (``tessera serve --workers N``: a socket per worker), their common parent, the supervisor, so
    that CPU counted from it covers every worker."""
    pids = listening_pids(port)
    if len(pids) > 1:
        parents = {_ppid(p) for p in pids}
        if len(parents) == 1 and (parent := parents.pop()) > 1 and parent != os.getpid():
            return parent
    return min(pids)


def listening_pids(port: int) -> set[int]:
    """The pids with a socket listening on ``port`` on this machine."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False).stdout
    return {int(p) for p in re.findall(r"pid=(\d+)", out)}


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])
