"""The CPU pool (web/cpupool.py): results and exceptions reach the awaiting coroutine, jobs run on
the pool's own threads, a cancelled wait leaves its job running and counted, shutdown cancels what
has not started."""

from __future__ import annotations

import asyncio
import threading

import pytest

from web.cpupool import CpuPool


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_results_come_back_from_the_pools_threads() -> None:
    pool = CpuPool(3, "test-cpu")

    async def main() -> list[tuple[int, str]]:
        def job(i: int) -> tuple[int, str]:
            return i * i, threading.current_thread().name

        return await asyncio.gather(*(pool.submit(lambda i=i: job(i)) for i in range(50)))

    try:
        out = run(main())
    finally:
        pool.shutdown()
    assert [v for v, _ in out] == [i * i for i in range(50)]
    names = {name for _, name in out}
    assert names and names <= {f"test-cpu_{i}" for i in range(3)}
    assert pool.pending == 0


def test_exceptions_reach_the_caller() -> None:
    pool = CpuPool(1, "test-cpu")

    def bad() -> None:
        raise ValueError("broken frame")

    def stops() -> None:
        raise StopIteration

    async def main() -> None:
        with pytest.raises(ValueError, match="broken frame"):
            await pool.submit(bad)
        with pytest.raises(RuntimeError, match="StopIteration"):
            await pool.submit(stops)
        assert await pool.submit(lambda: 7) == 7  # the thread survived both

    try:
        run(main())
    finally:
        pool.shutdown()
    assert pool.pending == 0


def test_a_cancelled_wait_leaves_the_job_running_and_counted() -> None:
    pool = CpuPool(1, "test-cpu")
    release = threading.Event()
    finished = threading.Event()

    def slow() -> str:
        release.wait(5)
        finished.set()
        return "done"

    async def main() -> None:
        task = asyncio.ensure_future(pool.submit(slow))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.pending == 1  # still running on its thread
        release.set()
        for _ in range(200):
            if pool.pending == 0:
                break
            await asyncio.sleep(0.01)
        assert finished.is_set() and pool.pending == 0

    try:
        run(main())
    finally:
        pool.shutdown()


def test_shutdown_cancels_jobs_not_started_and_refuses_new_ones() -> None:
    pool = CpuPool(1, "test-cpu")
    release = threading.Event()
    ran: list[int] = []

    def job(i: int) -> int:
        release.wait(5)
        ran.append(i)
        return i

    async def main() -> None:
        first = pool.submit(lambda: job(0))
        queued = [pool.submit(lambda i=i: job(i)) for i in range(1, 4)]
        await asyncio.sleep(0.05)  # the first job is running, the others wait in the queue
        pool.shutdown()
        release.set()
        assert await first == 0
        for future in queued:
            with pytest.raises(asyncio.CancelledError):
                await future
        assert pool.pending == 0
        with pytest.raises(RuntimeError, match="after shutdown"):
            pool.submit(lambda: 1)

    run(main())
    assert ran == [0]


def test_at_least_one_thread() -> None:
    with pytest.raises(ValueError):
        CpuPool(0, "test-cpu")


def test_a_job_cancelled_before_it_starts_is_skipped() -> None:
    pool = CpuPool(1, "test-cpu")
    release = threading.Event()
    ran: list[str] = []

    def blocker() -> None:
        release.wait(5)
        ran.append("blocker")

    async def main() -> None:
        first = pool.submit(blocker)
        queued = pool.submit(lambda: ran.append("queued"))
        await asyncio.sleep(0.05)
        queued.cancel()
        release.set()
        await first
        for _ in range(200):
            if pool.pending == 0:
                break
            await asyncio.sleep(0.01)
        assert pool.pending == 0

    try:
        run(main())
    finally:
        pool.shutdown(wait=True, timeout=5)
    assert ran == ["blocker"]


def test_nothing_of_a_finished_job_stays_referenced() -> None:
    import gc
    import weakref

    class Frame:
        pass

    pool = CpuPool(2, "test-cpu")
    refs: list[weakref.ref[Frame]] = []

    def make() -> Frame:
        frame = Frame()
        refs.append(weakref.ref(frame))
        return frame

    async def main() -> None:
        for _ in range(4):
            await pool.submit(make)

    try:
        run(main())
        gc.collect()
        assert all(r() is None for r in refs)
    finally:
        pool.shutdown(wait=True, timeout=5)


def test_the_count_comes_down_even_when_the_loop_is_gone() -> None:
    pool = CpuPool(1, "test-cpu")
    release = threading.Event()

    async def main() -> None:
        pool.submit(lambda: release.wait(5))
        await asyncio.sleep(0.01)

    run(main())  # the loop closes with the job still running
    release.set()
    pool.shutdown(wait=True, timeout=5)
    assert pool.pending == 0
