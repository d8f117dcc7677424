"""Received instances parsed in worker processes, so ingest is not bound to one core by the GIL.

Parsing an instance (pydicom's read, the DICOM JSON, the pixel description and frame table) is pure
Python holding the GIL: a server process storing instances used about one core however many STOW-RS
requests it had, and uvicorn's worker processes rarely shared a client's few keep-alive connections
(in bench runs all four went to one process most of the time). Here ``parse_instance`` runs in a
process pool instead, on the blobs' staged temporary files (``LocalStorage.stage``: written anyway,
read back from the page cache; a pipe carried 530 KB CT slices slower than they parse), and the parsed
result comes back. Must not write anything: the caller stores and indexes what it gets.

One pool per process, made on first use and shared by every Archive of that process (a test run
builds many); its processes are started with ``spawn``, never forked from a threaded server. A broken
pool (a worker killed by the OOM killer, say) is replaced on the next call, and that call parses in the
calling thread, so a request never fails for it.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from archive.allocator import tune_allocator
from archive.errors import IngestError
from archive.parse import ParsedInstance, parse_instance

log = logging.getLogger(__name__)

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_size = 0


def _parse(data: bytes, max_pixel_bytes: int) -> ParsedInstance | IngestError:
    """``parse_instance`` with its refusal returned rather than raised, so one bad blob of a batch
    does not hide the results of the others."""
    try:
        return parse_instance(data, max_pixel_bytes=max_pixel_bytes)
    except IngestError as exc:
        return exc


def _warm(_n: int) -> int:
    return os.getpid()


def _init_process(parent: int) -> None:
    # As in the server process: 530 KB reads and pixel buffers from the heap, not fresh pages each
    # time (the parse took 20-40% more CPU without); start-up objects out of the collector's way.
    tune_allocator()
    gc.collect()
    gc.freeze()
    # A server process killed outright (SIGKILL of a hung uvicorn worker) never closes the pool's
    # pipes: its parser processes go with it instead of lingering.
    # (The server's pid comes from the server: one that died while this process was still starting
    # would otherwise be taken for init.)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _shared(processes: int) -> ProcessPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != processes:
            if _pool is not None:
                _pool.shutdown(wait=False, cancel_futures=True)
            _pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init_process, initargs=(os.getpid(),))
            _pool_size = processes
        return _pool


def _discard(pool: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


def start(processes: int) -> None:
    """Start the pool's processes now (each imports pydicom once) instead of on the first STOW. A pool
    that cannot start is logged, not fatal: instances are then parsed in the server's threads."""
    if processes > 0:
        try:
            pool = _shared(processes)
            list(pool.map(_warm, range(processes)))
        except Exception:  # any failure to start processes leaves in-thread parsing
            log.warning("the ingest parser processes did not start; parsing in this process", exc_info=True)


def _parse_file(path: str, max_pixel_bytes: int) -> ParsedInstance | IngestError:
    with open(path, "rb") as fh:
        return _parse(fh.read(), max_pixel_bytes)


def parse_all(
    blobs: list[bytes], paths: list[Path] | None, *, max_pixel_bytes: int, processes: int
) -> list[ParsedInstance | IngestError]:
    """Each blob parsed (or its IngestError), in order: by ``processes`` worker processes reading the
    blobs' staged copies at ``paths`` when ``processes`` > 0, else in the calling thread. Whatever
    goes wrong with the pool (a process killed, a staged file unreadable, the pool replaced by another
    thread meanwhile) costs no instance: the call parses in its own thread instead."""
    if processes <= 0 or paths is None or not blobs:
        return [_parse(data, max_pixel_bytes) for data in blobs]
    pool = None
    try:
        pool = _shared(processes)
        # One task per process and call: per-task overhead (queue threads, wake-ups) cost 0.7 ms of
        # this process's CPU per instance with a task each.
        chunk = -(-len(paths) // processes)
        return list(pool.map(_parse_file, [str(p) for p in paths], [max_pixel_bytes] * len(paths), chunksize=chunk))
    except Exception as exc:  # noqa: BLE001 -- see the docstring: never worse than parsing here
        log.warning("ingest parser processes failed (%s: %s); parsing %d instances in this process",
                    type(exc).__name__, exc, len(blobs))
        if pool is not None and isinstance(exc, BrokenProcessPool):
            _discard(pool)
        return [_parse(data, max_pixel_bytes) for data in blobs]


def shutdown() -> None:
    """Stop this process's parser processes (a server's last step); the next use starts new ones."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)
