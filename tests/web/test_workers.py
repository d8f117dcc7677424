"""``tessera serve --workers N`` (web/workers.py): a listening socket per worker, so connections spread
over the workers; a worker that dies is replaced; the workers stop with their supervisor.

Real processes: ``tessera serve`` started as a user would, connections from this process, each
worker's connections read from /proc (which socket inodes it holds, and their state in /proc/net/tcp).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, process_alive, start_server, stop_server
from web.workers import STARTUP_FAILURE, PortInUse, Supervisor, bind_sockets, reuseport_available

pytestmark = pytest.mark.skipif(not reuseport_available(), reason="SO_REUSEPORT is Linux/BSD only")


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(x) for x in fh.read().split()]


def _workers(pid: int) -> list[int]:
    """The supervisor's worker processes (its spawned children, not multiprocessing's helpers)."""
    out = []
    for child in _children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"multiprocessing.spawn" in cmdline and b"resource_tracker" not in cmdline:
            out.append(child)
    return out


def _tcp_sockets(port: int, state: str) -> list[str]:
    """Inodes of the TCP sockets on local ``port`` in ``state`` (/proc/net/tcp codes: "01"
    established, "0A" listening)."""
    inodes = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as fh:
            next(fh)
            for line in fh:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                    inodes.append(fields[9])
    return inodes


def _established_inodes(port: int) -> set[str]:
    return set(_tcp_sockets(port, "01"))  # server side: the local port is the server's


def _listeners(port: int) -> int:
    """Listening sockets on ``port`` (one per serving worker: each listens once its app started)."""
    return len(_tcp_sockets(port, "0A"))


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def _wait(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)  # polling process state with a deadline
    return False


def _ready(root: str) -> bool:
    try:
        return httpx.get(root + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_connections_spread_over_workers(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", workers=2)
    try:
        port = int(server.root.rsplit(":", 1)[1])
        assert _wait(lambda: _listeners(port) == 2)  # the second worker serves too
        conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(16)]
        for conn in conns:  # opened in a burst, as a browser or a load test does
            conn.connect()
        for conn in conns:
            conn.request("GET", "/healthz")
            assert conn.getresponse().read() == b"ok"
        established = _established_inodes(port)
        held = {pid: len(_socket_inodes(pid) & established) for pid in _workers(server.process.pid)}
        for conn in conns:
            conn.close()
        assert sum(held.values()) == 16, held
        # The kernel hashes each connection to one of the two sockets: all 16 on one worker has a
        # probability of 2 in 65,536.
        assert all(n > 0 for n in held.values()), held
    finally:
        stop_server(server)


def test_a_worker_that_dies_is_replaced(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", workers=2)
    port = int(server.root.rsplit(":", 1)[1])
    try:
        assert _wait(lambda: _listeners(port) == 2)
        victim = _workers(server.process.pid)[0]
        os.kill(victim, signal.SIGKILL)
        assert _wait(lambda: _listeners(port) == 1)  # its socket died with it
        # Until its successor serves, every new connection goes to the other worker: none waits.
        for _ in range(20):
            assert httpx.get(server.root + "/healthz", timeout=5).status_code == 200
        assert _wait(lambda: victim not in _workers(server.process.pid) and _listeners(port) == 2)
        for _ in range(20):  # every request answered, whichever worker it lands on
            assert httpx.get(server.root + "/healthz", timeout=10).status_code == 200
        assert server.process.poll() is None
    finally:
        stop_server(server)
    assert "starting another" in server.log.read_text()


def test_sigterm_stops_every_worker(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", workers=2)
    assert _wait(lambda: len(_workers(server.process.pid)) == 2)
    workers = _workers(server.process.pid)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    assert _wait(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in workers), timeout=10)


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", workers=2)
    assert _wait(lambda: len(_workers(server.process.pid)) == 2)
    workers = _workers(server.process.pid)
    server.process.kill()
    server.process.wait(timeout=10)

    assert _wait(lambda: not any(process_alive(pid) for pid in workers), timeout=30), \
        "workers outlived their supervisor"
    assert not _ready(server.root)


def test_port_in_use_is_refused_with_its_address(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # even a SO_REUSEPORT listener
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(PortInUse, match=f"127.0.0.1:{port}"):
            bind_sockets("127.0.0.1", port, 2)
        cmd = [sys.executable, "-m", "web.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--data", str(tmp_path / "data"), "--workers", "2"]
        env = {**os.environ, "TESSERA_ANONYMOUS_ROLE": "admin", "TESSERA_FSYNC": "0"}
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1
    assert f"127.0.0.1:{port}" in done.stderr + done.stdout


@contextlib.contextmanager
def capture_stderr_fd() -> Iterator[Path]:
    """What this process and its spawned children write to file descriptor 2, in a file."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".log", delete=False) as tmp:
        path = Path(tmp.name)
    saved = os.dup(2)
    fd = os.open(path, os.O_WRONLY)
    os.dup2(fd, 2)
    try:
        yield path
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


def broken_app() -> None:
    """An app factory that fails, as a worker whose start-up fails would."""
    raise RuntimeError("this app cannot start")


def test_a_worker_that_cannot_start_stops_the_server() -> None:
    sockets = bind_sockets("127.0.0.1", free_port(), 2)
    supervisor = Supervisor(sockets, {"log_level": "critical"}, app="tests.web.test_workers:broken_app")
    started = time.monotonic()
    with capture_stderr_fd() as err:
        assert supervisor.run() == STARTUP_FAILURE
    assert "this app cannot start" in err.read_text()  # the factory ran and failed, not an import error
    assert time.monotonic() - started < 60
    assert all(s.fileno() == -1 for s in sockets)  # closed


def flaky_app():  # type: ignore[no-untyped-def]
    """A tiny app that cannot start while the file named by TESSERA_TEST_FLAKY exists."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    if os.path.exists(os.environ["TESSERA_TEST_FLAKY"]):
        raise RuntimeError("cannot start now")
    return Starlette(routes=[Route("/healthz", lambda request: PlainTextResponse("ok"))])


def test_a_replacement_that_cannot_start_is_retried_while_the_others_serve(tmp_path: Path) -> None:
    port = free_port()
    marker = tmp_path / "fail"
    script = ("import sys; from web.workers import Supervisor, bind_sockets; "
              f"sys.exit(Supervisor(bind_sockets('127.0.0.1', {port}, 2), {{'log_level': 'warning'}}, "
              "app='tests.web.test_workers:flaky_app').run())")
    env = {**os.environ, "TESSERA_TEST_FLAKY": str(marker)}
    log = tmp_path / "supervisor.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=fh, stderr=subprocess.STDOUT, env=env)
    try:
        assert _wait(lambda: _listeners(port) == 2)
        marker.touch()
        os.kill(_workers(proc.pid)[0], signal.SIGKILL)
        assert _wait(lambda: "before it started serving" in log.read_text())  # a successor failed
        assert proc.poll() is None  # the server goes on with the other worker
        for _ in range(10):
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).text == "ok"
        marker.unlink()
        assert _wait(lambda: _listeners(port) == 2, timeout=60)  # a later attempt starts
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
