"""Allocator tuning for processes that handle multi-megabyte buffers (server and ingest parser processes)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)


def tune_allocator() -> None:
    """Keep freed large blocks in the heap instead of returning them to the kernel.

    Every request allocates multi-megabyte buffers (bodies, files, frames). By default glibc serves
    those with fresh mmap'ed pages, and each first touch is a page fault: a 500 kB copy cost 0.2 ms
    instead of 0.02 ms here. The resident size then stays at its high-water mark instead of shrinking.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD: blocks below 256 MiB come from the heap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of free heap
    except (OSError, AttributeError):
        log.info("allocator tuning not available on this platform")
