"""The CPU pool (web/cpupool.py): results and exceptions reach the awaiting coroutine, jobs run on
the pool's own threads, a cancelled wait leaves its job running and counted, shutdown cancels what
has not started."""

from __future__ import annotations

import asyncio
import threading
import time
from functools import partial

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


# --- outcomes handed over in batches under a backlog ---------------------------------------------


def test_under_a_backlog_outcomes_arrive_in_batches() -> None:
    pool = CpuPool(1, "test-cpu", batch=4, max_hold=30.0)
    seen: list[int] = []  # per outcome, how many futures were done when its callback ran

    def job(i: int) -> int:
        time.sleep(0.002)
        return i

    async def main() -> list[int]:
        futures = [pool.submit(partial(job, i)) for i in range(8)]
        for future in futures:
            future.add_done_callback(lambda _f: seen.append(sum(f.done() for f in futures)))
        return await asyncio.wait_for(asyncio.gather(*futures), 10)

    try:
        assert run(main()) == list(range(8))
    finally:
        pool.shutdown()
    # One thread, eight jobs queued at once: the first four go over together when the batch is full,
    # the last four when the queue runs empty (no round of work left for the thread); the timer
    # (30 s) never fires.
    assert seen == [4, 4, 4, 4, 8, 8, 8, 8]


@pytest.mark.parametrize(("waiting", "max_hold"), [(2, 0.2), (1, 30.0)], ids=["held-until-timer", "not-held"])
def test_a_result_is_held_at_most_max_hold_and_only_while_a_round_waits(waiting: int, max_hold: float) -> None:
    # Two threads. ``waiting`` long jobs queued behind ``quick``: two are a round of work for both
    # threads, so ``quick``'s outcome is held, and with both threads then in long jobs only the timer
    # (0.2 s) hands it over. One is less than a round: held, ``quick`` would wait for the timer (30 s)
    # while its client sends nothing new, so it is not held.
    pool = CpuPool(2, "test-cpu", batch=8, max_hold=max_hold)
    release = threading.Event()

    async def main() -> float:
        first = pool.submit(lambda: release.wait(10))
        quick = pool.submit(lambda: "quick")
        later = [pool.submit(lambda: release.wait(10)) for _ in range(waiting)]
        started = time.monotonic()
        assert await asyncio.wait_for(quick, 5) == "quick"
        waited = time.monotonic() - started
        release.set()
        assert await asyncio.wait_for(asyncio.gather(first, *later), 10) == [True] * (1 + waiting)
        return waited

    try:
        waited = run(main())
    finally:
        release.set()
        pool.shutdown()
    assert waited < 2.0  # 0.2 s at most, with room for a slow machine
    assert pool.pending == 0


def test_a_lone_job_is_never_held() -> None:
    pool = CpuPool(3, "test-cpu", batch=8, max_hold=30.0)

    async def main() -> list[int]:
        out = [await asyncio.wait_for(pool.submit(partial(int, i)), 5) for i in range(5)]
        # No more jobs than threads: no backlog, no timer, every outcome at once.
        out.append(sum(await asyncio.wait_for(asyncio.gather(*(pool.submit(lambda: 1) for _ in range(3))), 5)))
        return out

    try:
        assert run(main()) == [0, 1, 2, 3, 4, 3]
    finally:
        pool.shutdown()


def test_shutdown_hands_over_what_was_held() -> None:
    pool = CpuPool(1, "test-cpu", batch=100, max_hold=30.0)
    release = threading.Event()

    async def main() -> None:
        first = pool.submit(lambda: "first")
        blocked = pool.submit(lambda: release.wait(10))
        queued = pool.submit(lambda: "never")
        for _ in range(500):  # ``first`` ends while two jobs wait: held
            if pool.pending == 2:
                break
            await asyncio.sleep(0.01)
        assert not first.done()
        pool.shutdown()  # cancels ``queued``, and hands ``first`` over
        assert await asyncio.wait_for(first, 5) == "first"
        with pytest.raises(asyncio.CancelledError):
            await queued
        release.set()
        assert await asyncio.wait_for(blocked, 5) is True

    try:
        run(main())
    finally:
        release.set()
        pool.shutdown(wait=True, timeout=5)
    assert pool.pending == 0


def test_batch_and_hold_are_checked() -> None:
    with pytest.raises(ValueError, match="batch"):
        CpuPool(1, "test-cpu", batch=0)
    with pytest.raises(ValueError, match="max_hold"):
        CpuPool(1, "test-cpu", batch=2, max_hold=0)
    CpuPool(1, "test-cpu", batch=1, max_hold=0).shutdown()  # no batching: no hold to bound


def test_one_failing_hand_over_does_not_strand_its_batch() -> None:
    pool = CpuPool(1, "test-cpu", batch=4, max_hold=30.0)
    reported: list[dict[str, object]] = []

    def job(i: int) -> int:
        time.sleep(0.002)
        return i

    async def main() -> list[int]:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: reported.append(context))
        futures = [pool.submit(partial(job, i)) for i in range(8)]
        futures[0].set_result(-1)  # its outcome, held in the first batch, then cannot be set
        return await asyncio.wait_for(asyncio.gather(*futures), 10)

    try:
        assert run(main()) == [-1, *range(1, 8)]
    finally:
        pool.shutdown()
    assert len(reported) == 1 and isinstance(reported[0]["exception"], asyncio.InvalidStateError)


def test_no_timer_without_a_round_of_work_waiting() -> None:
    # Five clients on four threads: at most one job waits once they run, so nothing can be held
    # and a hand-over timer would only wake the loop for nothing (once every 10 ms: about 25 times
    # here). At the start all five jobs may wait at once, a round: one timer then is fine.
    pool = CpuPool(4, "test-cpu", batch=8, max_hold=0.01)
    ticks = 0
    tick = pool._tick

    def counted(loop: asyncio.AbstractEventLoop) -> None:
        nonlocal ticks
        ticks += 1
        tick(loop)

    pool._tick = counted  # type: ignore[method-assign]

    async def client() -> None:
        for _ in range(100):
            await pool.submit(partial(time.sleep, 0.002))

    async def main() -> None:
        await asyncio.gather(*(client() for _ in range(5)))

    try:
        run(main())
    finally:
        pool.shutdown()
    assert ticks <= 5


def test_each_process_gets_one_thread_more_than_its_share_of_the_cores() -> None:
    from web.app import cpu_threads_for

    assert cpu_threads_for(2, 1) == 3
    assert cpu_threads_for(2, 2) == 2
    assert cpu_threads_for(2, 4) == 2  # a share is never below one core
    assert cpu_threads_for(8, 3) == 4
    assert cpu_threads_for(4, 0) == 5  # 0 workers: an app created directly runs in one process


@pytest.mark.parametrize(("settings", "expected"), [
    ({"workers": 2}, None),
    ({"workers": 1}, None),
    ({"workers": 2, "cpu_threads": 5}, 5),
])
def test_the_runtime_sizes_its_pool_by_the_workers(tmp_path, settings, expected) -> None:  # type: ignore[no-untyped-def]
    import os

    from archive.service import Archive, ArchiveConfig
    from web.app import cpu_threads_for, create_app
    from web.settings import Settings

    app = create_app(Settings(data=tmp_path, **settings), Archive(tmp_path, ArchiveConfig(durable=False)))
    rt = app.state.runtime
    try:
        want = expected or cpu_threads_for(os.cpu_count() or 2, settings["workers"])
        assert rt.cpu_threads == want
        assert rt.cpu_pool.threads == want
    finally:
        rt.shutdown()


def test_hold_0_turns_batching_off(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from archive.service import Archive, ArchiveConfig
    from web.app import create_app
    from web.settings import Settings

    rt = create_app(Settings(data=tmp_path, cpu_hold_ms=0), Archive(tmp_path, ArchiveConfig(durable=False))).state.runtime
    try:
        assert (rt.cpu_pool.batch, rt.cpu_pool.max_hold) == (1, 0)
    finally:
        rt.shutdown()
