"""The CPU pool: a fixed set of threads whose results go straight back to the awaiting event loop.

``ThreadPoolExecutor`` + ``asyncio.wrap_future`` makes a ``concurrent.futures.Future`` (with its
``threading.Condition``), a work item and an asyncio future chained to it both ways for every job:
about 20 microseconds of the event loop's time per job against 4 here, on a path (every cold rendered
frame) where the event loop's time per request is what keeps the two cores from the codecs. Here a job
is (loop, future, function) on a queue; the thread that runs it hands the outcome to the loop with
one ``call_soon_threadsafe``.

Used from one event loop's thread (``submit``, ``pending``); the threads start on the first job.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


class CpuPool:
    """``threads`` threads running submitted functions, one at a time each."""

    def __init__(self, threads: int, name: str) -> None:
        if threads < 1:
            raise ValueError(f"a pool needs at least one thread, not {threads}")
        self.threads = threads
        self.name = name
        #: Jobs submitted whose function has not returned yet (read and written on the loop's thread).
        self.pending = 0
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._started = False
        self._closed = False

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``fn()`` on a pool thread; the returned future (of the running loop) gets its outcome.
        Cancelling the future does not stop ``fn``: it runs to the end, counted in ``pending``."""
        if self._closed:
            raise RuntimeError(f"{self.name}: submit after shutdown")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if not self._started:
            self._start()
        self.pending += 1
        self._queue.put((loop, future, fn))
        return future

    def shutdown(self) -> None:
        """Stop taking jobs; jobs not started are cancelled, running ones finish; the threads end."""
        if self._closed:
            return
        self._closed = True
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                _deliver(job[0], self._cancelled, job[1], None)
        for _ in range(self.threads if self._started else 0):
            self._queue.put(None)

    def _start(self) -> None:
        self._started = True
        for i in range(self.threads):
            threading.Thread(target=self._run, name=f"{self.name}_{i}", daemon=True).start()

    def _run(self) -> None:
        get = self._queue.get
        while True:
            job = get()
            if job is None:
                return
            loop, future, fn = job
            try:
                result = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine, as an executor does
                _deliver(loop, self._failed, future, exc)
            else:
                _deliver(loop, self._done, future, result)
            del job, future, fn  # no reference to the last job's data while the thread waits

    def _done(self, future: asyncio.Future[Any], result: Any) -> None:
        self.pending -= 1
        if not future.cancelled():
            future.set_result(result)

    def _cancelled(self, future: asyncio.Future[Any], _unused: None) -> None:
        self.pending -= 1
        future.cancel()

    def _failed(self, future: asyncio.Future[Any], exc: BaseException) -> None:
        self.pending -= 1
        if not future.cancelled():
            if isinstance(exc, StopIteration):  # a future cannot hold StopIteration
                exc = RuntimeError(f"StopIteration raised in {self.name}")
            future.set_exception(exc)


def _deliver(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        pass  # the loop is closed: nobody is waiting any more
