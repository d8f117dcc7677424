"""The CPU pool: a fixed set of threads whose results go straight back to the awaiting event loop.

``ThreadPoolExecutor`` + ``asyncio.wrap_future`` makes a ``concurrent.futures.Future`` (with its
``threading.Condition``), a work item and an asyncio future chained to it both ways for every job:
about 20 microseconds of the event loop's time per job against 4 here, on a path (every cold rendered
frame) where the event loop's time per request is what keeps the two cores from the codecs. Here a job
is (loop, future, function) on a queue; the thread that runs it hands the outcome to the loop with
one ``call_soon_threadsafe``.

Under a backlog, outcomes are handed over in batches: a finished job's outcome is held while at
least a round of jobs (one per thread) still waits in the queue, until ``batch`` are held, the
queue gets shorter than a round or the loop's timer fires (``max_hold`` seconds after it was armed;
it is armed only while a round waits and the loop has jobs in the pool, so it never wakes an idle
or lightly loaded loop), then all go in one ``call_soon_threadsafe``. (Holding with less than a
round queued left threads idle: the held results' clients send no new requests meanwhile.) Each
hand-over wakes the event loop from sleep, and a woken loop runs its request path about three times
slower than one already running (bench/loop_cost.py: the same cached requests cost 0.19 ms of the
loop's thread back to back and 0.46 ms paced): answering several requests per wake-up gave cold
JPEG-LS at concurrency 16 4-6% more frames/s (README, "Handing results over in batches"). A result
waits at most ``max_hold``, only while a round of work waits; a lone request is never held.

As with the executor: a job whose future was cancelled before it started is skipped; a running job
runs to its end; at interpreter exit the threads finish their running jobs before Python finalizes
(joined from an ``atexit`` hook, which runs while threads may still take the GIL).
"""

from __future__ import annotations

import asyncio
import atexit
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]
#: A finished job's outcome: the loop to hand it to, and what to call there.
_Outcome = tuple[asyncio.AbstractEventLoop, Callable[..., None], tuple[Any, ...]]

_live: weakref.WeakSet[CpuPool] = weakref.WeakSet()


class CpuPool:
    """``threads`` threads running submitted functions, one at a time each; under a backlog their
    outcomes go to the event loop up to ``batch`` at a time, none held longer than ``max_hold``
    seconds (``batch=1``: each at once)."""

    def __init__(self, threads: int, name: str, *, batch: int = 1, max_hold: float = 0.01) -> None:
        if threads < 1:
            raise ValueError(f"a pool needs at least one thread, not {threads}")
        if batch < 1 or (batch > 1 and max_hold <= 0):
            raise ValueError(f"batch must be at least 1 (not {batch}), and max_hold above 0 when batching (not "
                             f"{max_hold})")
        self.threads = threads
        self.name = name
        self.batch = batch
        self.max_hold = max_hold
        # Under the lock: outcomes held back, and per event loop its armed hand-over timer. An outcome
        # is held only while its loop has one, which bounds its wait by ``max_hold``.
        self._held: list[_Outcome] = []
        self._timers: dict[asyncio.AbstractEventLoop, asyncio.TimerHandle] = {}
        # Under the lock, with batching: jobs submitted and not ended, per event loop (so one loop's
        # backlog never keeps another's timer going).
        self._outstanding: dict[asyncio.AbstractEventLoop, int] = {}
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._closed = False
        self._submitted = 0  # on the submitting (event loop) thread only
        self._finished = 0  # by the pool's threads, under the lock
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Jobs submitted and not ended (run, failed or skipped as cancelled)."""
        return self._submitted - self._finished

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``fn()`` on a pool thread; the returned future (of the running loop) gets its outcome.
        Cancelling the future before the job starts skips it; a started job runs to its end, counted
        in ``pending`` until then."""
        if self._closed:
            raise RuntimeError(f"{self.name}: submit after shutdown")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if len(self._workers) < self.threads:
            self._start()
        self._submitted += 1
        if self.batch > 1:
            with self._lock:
                self._outstanding[loop] = self._outstanding.get(loop, 0) + 1
        self._queue.put((loop, future, fn))
        # The timer only where outcomes may be held: a round of jobs waits.
        if self.batch > 1 and loop not in self._timers and self._round_waits():
            self._arm(loop)
        return future

    def shutdown(self, *, wait: bool = False, timeout: float | None = None) -> None:
        """Stop taking jobs; jobs not started are cancelled, running ones finish; the threads end
        (joined when ``wait``)."""
        if not self._closed:
            self._closed = True
            while True:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    self._ended(job[0])
                    _deliver(job[0], _cancel, job[1])
            with self._lock:  # nothing is held from now on: hand over what is
                self._timers.clear()
                held, self._held = self._held, []
            _hand_over(held)
            for _ in self._workers:
                self._queue.put(None)
        if wait:
            for worker in self._workers:
                if worker is not threading.current_thread():
                    worker.join(timeout)

    def _round_waits(self) -> bool:
        """Whether a round of jobs (one per thread) waits in the queue: every thread has its next, so
        holding an outcome (its client sends nothing new meanwhile) leaves no thread idle."""
        return self._queue.qsize() >= self.threads

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            # A loop closed with its timer armed never ticks: forget it here.
            for gone in [other for other in self._timers if other.is_closed()]:
                del self._timers[gone]
            self._timers[loop] = loop.call_later(self.max_hold, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        """On ``loop``, ``max_hold`` after arming: run the outcomes held for it; armed again only
        while a round of jobs waits and some are this loop's (else nothing more would be held)."""
        with self._lock:
            self._timers.pop(loop, None)
            mine = [h for h in self._held if h[0] is loop]
            if mine:
                self._held = [h for h in self._held if h[0] is not loop]
            again = not self._closed and self._round_waits() and loop in self._outstanding
        _run_held(mine)
        if again:
            self._arm(loop)

    def _start(self) -> None:
        _live.add(self)
        while len(self._workers) < self.threads:
            worker = threading.Thread(target=self._run, name=f"{self.name}_{len(self._workers)}", daemon=True)
            worker.start()  # may raise (no thread left): the next submit tries again
            self._workers.append(worker)

    def _run(self) -> None:
        get = self._queue.get
        while True:
            job = get()
            if job is None:
                return
            self._run_one(*job)
            del job  # nothing of the last job stays referenced while the thread waits

    def _run_one(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], fn: Callable[[], Any]) -> None:
        if future.cancelled():  # nobody waits any more and it has not started: skip it
            self._ended(loop)
            return
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine, as an executor does
            if isinstance(exc, StopIteration):  # a future cannot hold StopIteration
                exc = RuntimeError(f"StopIteration raised in {self.name}")
            self._ended(loop, _fail, (future, exc))
        else:
            self._ended(loop, _resolve, (future, result))

    def _ended(self, loop: asyncio.AbstractEventLoop, callback: Callable[..., None] | None = None,
               args: tuple[Any, ...] = ()) -> None:
        """Count a job of ``loop`` as ended and hand its outcome (``callback(*args)`` on the loop)
        over, or hold it: while a round of jobs waits, the loop's timer is armed and the batch is not
        full."""
        with self._lock:
            self._finished += 1
            if self.batch > 1:
                left = self._outstanding.pop(loop, 0) - 1
                if left > 0:
                    self._outstanding[loop] = left
            if callback is not None:
                self._held.append((loop, callback, args))
                if (len(self._held) < self.batch and loop in self._timers and not self._closed
                        and self._round_waits()):
                    return
            if not self._held:
                return
            held, self._held = self._held, []
        _hand_over(held)


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.cancelled():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.cancelled():
        future.set_exception(exc)


def _hand_over(held: list[_Outcome]) -> None:
    """Outcomes to their loops, one ``call_soon_threadsafe`` per loop."""
    loops = {h[0] for h in held}
    for loop in loops:
        _deliver(loop, _run_held, held if len(loops) == 1 else [h for h in held if h[0] is loop])


def _run_held(held: list[_Outcome]) -> None:
    for loop, callback, args in held:
        try:
            callback(*args)
        except Exception as exc:  # noqa: BLE001 - one bad outcome must not strand the rest of the batch
            loop.call_exception_handler({"message": "delivering a CPU-pool outcome failed", "exception": exc})


def _cancel(future: asyncio.Future[Any]) -> None:
    future.cancel()


def _deliver(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        pass  # the loop is closed: nobody is waiting any more


@atexit.register
def _finish_at_exit() -> None:
    # Daemon threads, so a pool nobody shut down never holds the process open; but a job still in a
    # codec when Python finalizes would be cut off inside native code: let running jobs end first.
    for pool in list(_live):
        pool.shutdown(wait=True, timeout=30)
