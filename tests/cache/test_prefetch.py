"""Prefetch order and the bounded, low-priority prefetch worker."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest
from prometheus_client import REGISTRY

from cache.prefetch import Prefetcher, interleaved_order, neighbours_order


def test_interleaved_order_of_nine() -> None:
    assert interleaved_order(9) == [4, 0, 8, 2, 6, 1, 3, 5, 7]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 10, 17, 64, 300, 1001])
def test_interleaved_order_covers_each_index_once(n: int) -> None:
    order = interleaved_order(n)
    assert sorted(order) == list(range(n))
    assert order == interleaved_order(n)  # deterministic
    if n >= 3:
        assert order[:3] == [(n - 1) // 2, 0, n - 1]


def test_interleaved_order_halves_gaps() -> None:
    # After the first 2**k + 1 items of a 2**m + 1 series, no gap is wider than 2**(m - k).
    order = interleaved_order(257)
    for k in range(1, 8):
        seen = sorted(order[: 2**k + 1])
        assert max(b - a for a, b in itertools.pairwise(seen)) == 2 ** (8 - k)


def test_neighbours_order() -> None:
    assert neighbours_order(5, 10, 2) == [6, 4, 7, 3]
    assert neighbours_order(0, 10, 2) == [1, 2]
    assert neighbours_order(9, 10, 3) == [8, 7, 6]


class Recorder:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.running = 0
        self.max_running = 0
        self.gate = asyncio.Event()

    def job(self, name: str, *, wait: bool = False) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            self.started.append(name)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            try:
                if wait:
                    await self.gate.wait()
                await asyncio.sleep(0)
            finally:
                self.running -= 1

        return run


def test_runs_in_order_one_at_a_time() -> None:
    async def main() -> Recorder:
        rec = Recorder()
        pf = Prefetcher()
        assert pf.submit("s1", [(f"k{i}", rec.job(f"k{i}")) for i in interleaved_order(5)]) == 5
        await pf.idle()
        await pf.aclose()
        return rec

    rec = asyncio.run(main())
    assert rec.started == ["k2", "k0", "k4", "k1", "k3"]
    assert rec.max_running == 1


def test_full_queue_drops_and_duplicates_are_skipped() -> None:
    dropped_before = REGISTRY.get_sample_value("tessera_prefetch_jobs_total", {"outcome": "dropped"}) or 0.0

    async def main() -> tuple[int, int, int, Recorder]:
        rec = Recorder()
        pf = Prefetcher(max_queue=3)
        with pf.interactive():  # hold the worker so the queue fills
            accepted = pf.submit("s", [(f"k{i}", rec.job(f"k{i}")) for i in range(5)])
            again = pf.submit("s", [("k0", rec.job("dup"))])
            depth = pf.depth
        await pf.idle()
        await pf.aclose()
        return accepted, again, depth, rec

    accepted, again, depth, rec = asyncio.run(main())
    assert (accepted, again, depth) == (3, 0, 3)
    assert rec.started == ["k0", "k1", "k2"]
    dropped = REGISTRY.get_sample_value("tessera_prefetch_jobs_total", {"outcome": "dropped"}) or 0.0
    assert dropped - dropped_before == 2


def test_nothing_starts_while_interactive_work_runs() -> None:
    async def main() -> tuple[list[str], list[str]]:
        rec = Recorder()
        pf = Prefetcher()
        with pf.interactive():
            pf.submit("s", [("a", rec.job("a"))])
            for _ in range(10):
                await asyncio.sleep(0)
            during = list(rec.started)
        await pf.idle()
        await pf.aclose()
        return during, rec.started

    during, after = asyncio.run(main())
    assert during == []
    assert after == ["a"]


def test_cancel_a_series_drops_its_queue_and_its_running_job() -> None:
    async def main() -> tuple[int, Recorder, int]:
        rec = Recorder()
        pf = Prefetcher()
        pf.submit("s1", [("a1", rec.job("a1", wait=True)), ("a2", rec.job("a2")), ("a3", rec.job("a3"))])
        pf.submit("s2", [("b1", rec.job("b1"))])
        while not rec.started:
            await asyncio.sleep(0)
        removed = pf.cancel("s1")
        await pf.idle()
        running = rec.running
        await pf.aclose()
        return removed, rec, running

    removed, rec, running = asyncio.run(main())
    assert removed == 3
    assert rec.started == ["a1", "b1"]
    assert running == 0


def test_urgent_jobs_go_first_and_failures_are_counted() -> None:
    async def main() -> tuple[Recorder, int]:
        rec = Recorder()
        pf = Prefetcher()

        async def boom() -> None:
            raise RuntimeError("decode failed")

        with pf.interactive():
            pf.submit("s", [("x", rec.job("x")), ("bad", boom)])
            pf.submit("s", [("n1", rec.job("n1")), ("n2", rec.job("n2"))], urgent=True)
        await pf.idle()
        await pf.aclose()
        return rec, pf.failed

    rec, failed = asyncio.run(main())
    assert rec.started == ["n1", "n2", "x"]
    assert failed == 1
