"""Prefetch: the order in which to warm a series, and a bounded, low-priority worker that does it.

``interleaved_order`` visits the middle, the first and the last item, then keeps halving the gaps, so a
viewer scrolling anywhere soon finds a warmed frame near it. ``neighbours_order`` warms outward from an
opened frame. ``Prefetcher`` runs at most ``concurrency`` (default one) jobs at a time per process,
only while no interactive request is in flight (``interactive()``), drops jobs when its queue is full,
skips keys already queued, and cancels per group (series). Jobs should go through
``SingleFlight.get_or_compute`` so an interactive request for a key being prefetched joins that
computation instead of repeating it. Must not do the work itself or know how frames are rendered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cache import metrics

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[object]]


def interleaved_order(n: int) -> list[int]:
    """0..n-1 as middle, first, last, then the midpoints of every gap, level by level, left to right.

    For 9: [4, 0, 8, 2, 6, 1, 3, 5, 7]. Deterministic; each index exactly once.
    """
    if n <= 0:
        return []
    mid = (n - 1) // 2
    order = list(dict.fromkeys((mid, 0, n - 1)))  # dedupes for n <= 2, keeps the order
    gaps = [(0, mid), (mid, n - 1)]
    while gaps:
        next_gaps = []
        for lo, hi in gaps:
            if hi - lo > 1:
                m = (lo + hi) // 2
                order.append(m)
                next_gaps += [(lo, m), (m, hi)]
        gaps = next_gaps
    return order


def neighbours_order(center: int, n: int, radius: int) -> list[int]:
    """Indices around ``center`` within ``radius``, nearest first, next one before previous one
    (scrolling forward is the common direction); ``center`` itself is excluded."""
    out = []
    for d in range(1, radius + 1):
        for i in (center + d, center - d):
            if 0 <= i < n:
                out.append(i)
    return out


@dataclass(slots=True)
class _Item:
    group: str
    key: str
    job: Job


class Prefetcher:
    def __init__(self, *, max_queue: int = 1024, concurrency: int = 1) -> None:
        self.max_queue = max_queue
        self.concurrency = concurrency
        self._queue: deque[_Item] = deque()
        self._queued_keys: set[str] = set()
        self._running: dict[asyncio.Task[object], _Item] = {}
        self._interactive = 0
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self.dropped = 0
        self.done = 0
        self.failed = 0

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """Whether an interactive render or a prefetch job is in flight: background work with a
        lower priority still (archive renditions) waits while this is true."""
        return self._interactive > 0 or bool(self._running)

    def submit(self, group: str, items: Iterable[tuple[str, Job]], *, urgent: bool = False) -> int:
        """Queue (key, job) pairs of ``group``; returns how many were accepted.

        Keys already queued or running are skipped; the rest are dropped once the queue is full.
        ``urgent`` puts them ahead of what is queued (the neighbours of the frame just opened).
        Must be called on the event loop.
        """
        running_keys = {item.key for item in self._running.values()}
        fresh: list[_Item] = []
        for key, job in items:
            if key in self._queued_keys or key in running_keys:
                continue
            if len(self._queue) + len(fresh) >= self.max_queue:
                self.dropped += 1
                metrics.PREFETCH_JOBS.labels("dropped").inc()
                continue
            self._queued_keys.add(key)
            fresh.append(_Item(group, key, job))
        if urgent:
            self._queue.extendleft(reversed(fresh))
        else:
            self._queue.extend(fresh)
        metrics.PREFETCH_QUEUE.set(len(self._queue))
        if fresh:
            self._ensure_worker().set()
        return len(fresh)

    def cancel(self, group: str) -> int:
        """Forget the queued jobs of ``group`` and cancel its running ones; returns how many."""
        kept = deque(item for item in self._queue if item.group != group)
        removed = len(self._queue) - len(kept)
        for item in self._queue:
            if item.group == group:
                self._queued_keys.discard(item.key)
        self._queue = kept
        for task, item in list(self._running.items()):
            if item.group == group:
                task.cancel()
                removed += 1
        if removed:
            metrics.PREFETCH_JOBS.labels("cancelled").inc(removed)
        metrics.PREFETCH_QUEUE.set(len(self._queue))
        return removed

    @contextmanager
    def interactive(self) -> Iterator[None]:
        """Wrap interactive work: no prefetch job starts while any is in flight."""
        self._interactive += 1
        try:
            yield
        finally:
            self._interactive -= 1
            if self._interactive == 0 and self._wake is not None:
                self._wake.set()

    def _ensure_worker(self) -> asyncio.Event:
        if self._wake is None or self._worker is None or self._worker.done():
            self._wake = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._run(self._wake))
        return self._wake

    async def _run(self, wake: asyncio.Event) -> None:
        while True:
            while not self._queue or self._interactive or len(self._running) >= self.concurrency:
                wake.clear()
                await wake.wait()
            item = self._queue.popleft()
            self._queued_keys.discard(item.key)
            metrics.PREFETCH_QUEUE.set(len(self._queue))
            task = asyncio.ensure_future(item.job())
            self._running[task] = item
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[object]) -> None:
        self._running.pop(task, None)  # type: ignore[call-overload]
        if not task.cancelled():
            if task.exception() is not None:
                self.failed += 1
                metrics.PREFETCH_JOBS.labels("failed").inc()
                log.debug("prefetch job failed", exc_info=task.exception())
            else:
                self.done += 1
                metrics.PREFETCH_JOBS.labels("done").inc()
        if self._wake is not None:
            self._wake.set()

    async def idle(self) -> None:
        """Wait until the queue is empty and nothing runs (tests, graceful shutdown)."""
        while self._queue or self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)
            await asyncio.sleep(0.001)  # queue waiting on interactive work: poll, do not spin

    async def aclose(self) -> None:
        """Drop the queue, cancel running jobs and the worker."""
        self._queue.clear()
        self._queued_keys.clear()
        for task in list(self._running):
            task.cancel()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, *list(self._running), return_exceptions=True)
        metrics.PREFETCH_QUEUE.set(0)
