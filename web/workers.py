"""Worker processes for ``tessera serve --workers N``: each accepts connections on a listening socket
of its own, all bound to the same address with SO_REUSEPORT, so the kernel spreads new connections
over the workers by their addresses.

Why not uvicorn's ``workers=``: there every worker accepts from one shared socket, and the worker
whose event loop wakes first takes every connection queued at that moment. A client that opens its
connections in a burst (a viewer's browser, a load test) then had all of them on one process in
four of eight trials here (15 of 16 once, 14 twice; wrk's 16 connections, opened after an earlier
run's had closed): one event loop and one GIL served every request while the other worker idled,
and cold JPEG-LS gave 458-468 frames/s against 469-492 in the other trials. libuv's
``UV_TCP_SINGLE_ACCEPT`` did not help (all on one process in four of eight trials).

The supervisor binds the sockets (refusing an address already in use, also by another SO_REUSEPORT
group) and starts one spawned process per socket, one after the other; a worker listens on its
socket only once its app has started, and the socket dies with it, so no connection waits on a
worker that is starting or gone. A worker that exits is started again (after a delay that grows
while its successors keep dying young); the server stops only when a worker fails at the first
start (status 3, as uvicorn) or on SIGINT/SIGTERM, which asks every worker to finish (SIGTERM:
uvicorn's graceful shutdown), waits for them, then kills what is left. A worker whose supervisor
disappears (killed) shuts itself down.

Linux and the BSDs have SO_REUSEPORT; elsewhere ``reuseport_available()`` is False and ``tessera
serve`` falls back to uvicorn's shared socket.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: uvicorn's exit status for a server that failed to start.
STARTUP_FAILURE = 3
#: How long stopping workers may take before they are killed (uvicorn finishes requests in flight).
STOP_TIMEOUT_S = 20.0
#: A worker that dies is started again after this delay, doubled after every death that came less
#: than STABLE_S after its start, up to RESTART_MAX_S; the other workers serve meanwhile.
RESTART_FIRST_S = 0.5
RESTART_MAX_S = 30.0
STABLE_S = 60.0
#: The app every worker builds from the TESSERA_* variables the supervisor exported.
APP = "web.app:app_from_env"


class PortInUse(OSError):
    """The address is taken (by another server, or by another group of SO_REUSEPORT sockets)."""


def reuseport_available() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def _bound(family: int, address: tuple[Any, ...]) -> socket.socket:
    """A SO_REUSEPORT socket bound to ``address`` but not listening: the worker's server listens on
    it once started, so no connection waits in the queue of a worker still starting (or dead)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def bind_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` sockets bound to (host, port), sharing it with SO_REUSEPORT, not yet listening (port
    0: one free port for all). Raises PortInUse."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # A plain bind first: it fails when anything is bound there, including another SO_REUSEPORT group
    # of this user, which our own SO_REUSEPORT binds would otherwise silently join.
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortInUse(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(_bound(family, (host, port) if not sockets else sockets[0].getsockname()))
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise PortInUse(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sockets


def _worker_main(app: str, sock: socket.socket, config: Mapping[str, Any], ready: Any, parent: int) -> None:
    """One worker process: uvicorn on its own socket; writes to ``ready`` (a pipe's end) when it
    serves. A pipe, not a multiprocessing Event: setting an Event whose waiter was killed blocks."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, factory=True, **config))

    def watch() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.05)  # polled: uvicorn has no start-up callback
        with contextlib.suppress(OSError):
            ready.send_bytes(b"ready")
        ready.close()
        while not server.should_exit:
            if os.getppid() != parent:  # the supervisor is gone (killed): finish as on SIGTERM
                server.should_exit = True
                return
            time.sleep(1.0)

    threading.Thread(target=watch, name="tessera-worker-watch", daemon=True).start()
    server.run(sockets=[sock])  # listens on the socket once the app has started
    if not server.started:
        sys.exit(STARTUP_FAILURE)


@dataclass
class _Worker:
    index: int
    process: Any
    signal: Any  # the reading end of the worker's pipe
    started_at: float
    started: bool = False

    def ready(self) -> bool:
        """Whether the worker said it serves (checked without waiting)."""
        if not self.started and self.signal.poll():
            with contextlib.suppress(EOFError, OSError):
                self.started = self.signal.recv_bytes() == b"ready"
        return self.started


@dataclass
class Supervisor:
    """Runs one worker per socket until SIGINT/SIGTERM, or until a worker cannot start. ``app``: the
    ASGI app factory as uvicorn's "module:attribute". Takes the sockets over (closes them)."""

    sockets: list[socket.socket]
    config: Mapping[str, Any]
    app: str = APP

    def __post_init__(self) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._family = self.sockets[0].family
        self._address = self.sockets[0].getsockname()
        # Set by the signal handler: a plain attribute, since a handler must not take a lock the
        # interrupted main thread may hold (threading.Event.set in a handler can deadlock).
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    def _start(self, index: int, sock: socket.socket) -> _Worker:
        reader, writer = self._ctx.Pipe(duplex=False)
        try:
            process = self._ctx.Process(
                target=_worker_main, args=(self.app, sock, dict(self.config), writer, os.getpid()),
                name=f"tessera-worker-{index}",
            )
            process.start()
        finally:
            writer.close()  # the worker holds its own copies of the pipe's end and of the socket,
            sock.close()  # so a socket dies with its worker and takes no more connections
        return _Worker(index, process, reader, time.monotonic())

    def run(self) -> int:
        """Serve until stopped; returns the exit status (0, or STARTUP_FAILURE)."""
        previous = {sig: signal.signal(sig, lambda *_: self.stop()) for sig in (signal.SIGINT, signal.SIGTERM)}
        workers: list[_Worker] = []
        status = 0
        pending, self.sockets = self.sockets, []
        try:
            # One at a time, as uvicorn does: workers starting together on a new data folder raced to
            # create the index ("database is locked").
            for i, sock in enumerate(pending):
                workers.append(self._start(i, sock))
                if not self._wait_ready(workers[-1]):
                    if not self._stopping:
                        log.error("worker %d exited with status %s before it started serving: stopping", i,
                                  workers[-1].process.exitcode)
                        status = STARTUP_FAILURE
                    self._stopping = True
                    break
            self._supervise(workers)
        finally:
            for sock in pending:  # those not handed to a worker (each worker's is closed here already)
                sock.close()
            self._stop_all(workers)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status

    def _supervise(self, workers: list[_Worker]) -> None:
        """Replace workers that exit, with a growing delay while they keep dying soon after starting;
        the others serve meanwhile."""
        delay = [RESTART_FIRST_S] * len(workers)
        due: dict[int, float] = {}
        while not self._stopping:
            time.sleep(0.2)
            now = time.monotonic()
            for i, worker in enumerate(workers):
                if i in due:
                    if now < due[i] or self._stopping:
                        continue
                    del due[i]
                    try:
                        workers[i] = self._start(i, _bound(self._family, self._address))
                    except OSError as exc:
                        log.error("worker %d cannot be started again: %s; retrying", i, exc)
                        due[i] = now + delay[i]
                    continue
                if worker.process.is_alive():
                    continue
                lived = now - worker.started_at
                delay[i] = RESTART_FIRST_S if lived >= STABLE_S else min(RESTART_MAX_S, delay[i] * 2)
                state = "after it started serving" if worker.ready() else "before it started serving"
                log.warning("worker %d (pid %s) exited with status %s %s, %.0f s after its start: starting "
                            "another in %.1f s", i, worker.process.pid, worker.process.exitcode, state, lived,
                            delay[i])
                worker.signal.close()
                due[i] = now + delay[i]

    def _wait_ready(self, worker: _Worker) -> bool:
        """Whether the worker started serving (False: it exited first, or we are stopping)."""
        while not self._stopping:
            if worker.ready():
                return True
            if not worker.process.is_alive():
                return worker.ready()
            time.sleep(0.05)
        return False

    @staticmethod
    def _stop_all(workers: list[_Worker]) -> None:
        for worker in workers:
            if worker.process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    worker.process.terminate()  # SIGTERM: uvicorn's graceful shutdown
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                log.warning("worker %d did not stop within %.0f s: killed", worker.index, STOP_TIMEOUT_S)
                worker.process.kill()
                worker.process.join()
            worker.signal.close()


def serve_workers(host: str, port: int, count: int, config: Mapping[str, Any]) -> int:
    """Serve ``APP`` from ``count`` worker processes on (host, port); returns the exit status.
    ``config``: uvicorn.Config keywords besides the app (log level, TLS files). Raises PortInUse."""
    return Supervisor(bind_sockets(host, port, count), config).run()
