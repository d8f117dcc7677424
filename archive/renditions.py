"""Fast-decode renditions: a verified HTJ2K lossless copy of frames stored in slow codecs.

A lossless JPEG 2000 CT slice takes about 24 ms to decode, HTJ2K about 1.3 ms, and HTJ2K can decode a
reduced resolution for a smaller viewport (FACTS.md). After ingest, a bounded background worker
decodes each frame of an instance stored in a slow lossless syntax, encodes it as HTJ2K lossless with
the 1.2.840.10008.1.2.4.202 options (reversible 5/3 wavelet, RPCL progression, tile-parts per
resolution with TLM markers, enough decompositions that the smallest resolution is <= 64 px), decodes
that again with the renderer's own decoder and compares the arrays (and the colour space the decoder
reports): only a bit-exact copy is used. The frames' codestreams go into one blob per instance,
beside the original, whose key is derived from the original's (``storage.derived_key``); the original
is never modified and is what WADO-RS returns. The blob is written first, then the index row (one
transaction, ``rendition_index``): a crash between leaves a harmless orphan blob that the retry
overwrites, and the backlog is simply "instances in a source syntax without a rendition row".

What is transcoded, and why:
- JPEG 2000 lossless (.90), JPEG-LS lossless (.80), lossless JPEG (.57, .70): slow decoders (4-24 ms).
- Not uncompressed or RLE: they already decode in 0.04-0.4 ms, faster than HTJ2K (1.3 ms); HTJ2K
  would save disk bytes, which matter only with an object store (not implemented yet).
- Not lossy originals (.50/.51, .81, .91, .203): never replaced by other pixels. HTJ2K reversible of
  their decoded pixels would be exact (``transcode_frame`` verifies that for any syntax), but such a
  copy is 1.8-3.5x the size of the lossy original (measured) for a 3-7 ms gain; JPEG baseline decodes in
  0.3 ms. Those instances simply get no rendition.

Must not know HTTP; the web layer starts ``RenditionWorker`` and hands it its thread pools.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from prometheus_client import Counter, Gauge

from archive.errors import ArchiveError, RenditionNotExact
from archive.index import InstanceRecord
from archive.parse import Fragment
from archive.service import RENDITION_PURPOSE, Archive
from archive.storage import derived_key
from render.codecs import decode
from render.codecs.base import (
    HTJ2K_RPCL,
    J2K_LOSSLESS,
    JPEG_LOSSLESS,
    JPEG_LOSSLESS_SV1,
    JPEGLS_LOSSLESS,
)
from render.errors import DecodeError, UnsupportedTransferSyntax
from render.frameinfo import FrameInfo

try:
    import imagecodecs as _ic
except ImportError:  # optional codec: without it there are no renditions, everything else works
    _ic = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
T = TypeVar("T")

RENDITION_SYNTAX = HTJ2K_RPCL
#: Slow lossless syntaxes worth a rendition (see the module docstring for what is left out and why).
SOURCE_SYNTAXES = frozenset({J2K_LOSSLESS, JPEGLS_LOSSLESS, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1})
#: OpenJPH's default; more only when needed for the smallest resolution to be <= SMALLEST_RESOLUTION.
MIN_DECOMPOSITIONS = 5
SMALLEST_RESOLUTION = 64

RENDITIONS = Counter(
    "tessera_renditions", "Instances processed by the rendition worker, by outcome (done, skipped, failed)",
    ["outcome"],
)
BACKLOG = Gauge(
    "tessera_rendition_backlog", "Instances still waiting for a fast-decode rendition", multiprocess_mode="livemax"
)


@dataclass(frozen=True, slots=True)
class RenditionPolicy:
    """Which instances get renditions: source syntaxes, and modalities (None = every modality)."""

    syntaxes: frozenset[str] = SOURCE_SYNTAXES
    modalities: frozenset[str] | None = None

    @classmethod
    def from_modalities(cls, text: str) -> RenditionPolicy:
        """From a comma list such as ``"CT,MR"``; empty or ``*`` means every modality."""
        names = frozenset(m.strip().upper() for m in text.split(",") if m.strip())
        return cls(modalities=None if not names or "*" in names else names)


def decomposition_levels(rows: int, columns: int) -> int:
    """Wavelet decompositions so the smallest resolution is at most SMALLEST_RESOLUTION pixels across."""
    need = math.ceil(math.log2(max(rows, columns, 1) / SMALLEST_RESOLUTION)) if max(rows, columns) > 64 else 0
    return min(32, max(MIN_DECOMPOSITIONS, need))  # JPEG 2000 allows at most 32 (ISO 15444-1 A.6.1)


def encode_htj2k(arr: np.ndarray, levels: int, *, rgb: bool) -> bytes:
    """HTJ2K lossless with the .4.202 options. OpenJPH writes RPCL by default; ``rgb`` turns on the
    reversible colour transform (its decoder then returns RGB, as ``j2k_output_photometric`` reports)."""
    if _ic is None:
        raise UnsupportedTransferSyntax("imagecodecs is not installed: no HTJ2K encoder")
    return bytes(
        _ic.htj2k_encode(
            arr, reversible=True, resolutions=levels, tlm=True, tilepart=_ic.HTJ2K.TILEPART.RESOLUTIONS, rgb=rgb
        )
    )


def transcode_frame(data: bytes, info: FrameInfo) -> bytes:
    """One stored frame as a verified HTJ2K lossless codestream.

    Decodes with the renderer's preferred decoder, encodes, decodes the result the same way and
    compares arrays, dtype and reported colour space. Raises RenditionNotExact, DecodeError,
    UnsupportedTransferSyntax.
    """
    original = decode(data, info)
    arr = original.array
    rgb = arr.ndim == 3 and original.photometric == "RGB"
    codestream = encode_htj2k(arr, decomposition_levels(info.rows, info.columns), rgb=rgb)
    check = decode(codestream, replace(info, transfer_syntax_uid=RENDITION_SYNTAX))
    if check.array.dtype != arr.dtype or check.photometric != original.photometric:
        raise RenditionNotExact(
            f"HTJ2K copy decodes to {check.array.dtype}/{check.photometric}, the original to "
            f"{arr.dtype}/{original.photometric}"
        )
    if not np.array_equal(check.array, arr):
        raise RenditionNotExact(f"HTJ2K copy differs from the original in {int((check.array != arr).sum())} samples")
    return codestream


def rendition_key(record: InstanceRecord) -> str:
    return derived_key(record.blob_key, RENDITION_PURPOSE)


def store_rendition(archive: Archive, record: InstanceRecord, codestreams: list[bytes]) -> bool:
    """Write the blob (atomically), then the index row; False when the instance went meanwhile.

    The row is written only if the original is still indexed; otherwise the blob is removed again
    (and ``Archive.delete`` removes it too if it ran in between: the key is derived).
    """
    key = rendition_key(record)
    spans, offset = [], 0
    for cs in codestreams:
        spans.append(Fragment(offset, len(cs)))
        offset += len(cs)
    archive.storage.put_many([(key, b"".join(codestreams))], durable=archive.config.durable)
    if archive.index.add_rendition(record.blob_key, key, RENDITION_SYNTAX, spans):
        return True
    archive.storage.delete(key)
    return False


def _skip(archive: Archive, record: InstanceRecord, exc: Exception) -> str:
    log.info("no rendition for blob %s: %s", record.blob_key, exc)
    archive.index.skip_rendition(record.blob_key, RENDITION_SYNTAX, str(exc))
    return "skipped"


def transcode_instance(archive: Archive, record: InstanceRecord) -> str:
    """Make and store the rendition of one instance, in the calling thread; returns the outcome:
    ``done``, ``skipped`` (cannot be exact: remembered, not retried) or ``gone`` (deleted meanwhile).
    Transient errors (I/O) propagate and leave no row, so the instance stays in the backlog."""
    info = record.frame_info
    if info is None:
        return "gone"
    try:
        streams = [transcode_frame(archive.frame(record, n), info) for n in range(1, record.number_of_frames + 1)]
    except (RenditionNotExact, DecodeError, UnsupportedTransferSyntax) as exc:
        return _skip(archive, record, exc)
    return "done" if store_rendition(archive, record, streams) else "gone"


class Backlog:
    """Walks the backlog: new arrivals first (ascending internal key above the highest seen), then the
    older backlog newest first (recent studies are the ones being read). Rows written meanwhile (done,
    skipped) drop out of the query by themselves. ``rewind`` starts another walk of the older part:
    it picks up what a walk cannot see (an instance failed transiently, or SQLite reused the key of
    a deleted top row for a new one)."""

    def __init__(self, archive: Archive, policy: RenditionPolicy, page: int = 16) -> None:
        self.archive, self.policy, self.page = archive, policy, page
        self.high = archive.index.max_instance_pk()
        self.low: int | None = self.high + 1

    def next_page(self) -> list[InstanceRecord]:
        index, p = self.archive.index, self.policy
        fresh = index.backlog_page(p.syntaxes, p.modalities, above=self.high, limit=self.page)
        if fresh:
            self.high = fresh[-1][0]
            return [r for _pk, r in fresh]
        if self.low is None:
            return []
        older = index.backlog_page(p.syntaxes, p.modalities, below=self.low, limit=self.page)
        self.low = older[-1][0] if older else None
        return [r for _pk, r in older]

    def rewind(self) -> None:
        self.low = self.high + 1


def try_lock(root: Path) -> int | None:
    """One transcoder per archive (``--workers`` processes and the CLI share it): an flock held for
    the worker's life; released by the kernel if the process dies. Returns the fd, or None if taken."""
    fd = os.open(root / "renditions.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def run_backlog(archive: Archive, policy: RenditionPolicy, progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Process the whole backlog in the calling thread (``tessera renditions --run``); returns counts
    per outcome. Raises ArchiveError when a server's worker already holds the archive's lock."""
    fd = try_lock(archive.root)
    if fd is None:
        raise ArchiveError(f"another process (a running server?) is transcoding renditions in {archive.root}")
    counts = {"done": 0, "skipped": 0, "gone": 0, "failed": 0}
    try:
        backlog = Backlog(archive, policy)
        while page := backlog.next_page():
            for record in page:
                try:
                    outcome = transcode_instance(archive, record)
                except (OSError, ArchiveError) as exc:
                    log.warning("rendition of blob %s failed: %s", record.blob_key, exc)
                    outcome = "failed"
                counts[outcome] += 1
                RENDITIONS.labels(outcome).inc()
                if progress is not None:
                    progress(outcome)
    finally:
        os.close(fd)
    return counts


class RenditionWorker:
    """The background transcoder of a server process: ``threads`` instances at a time, each frame one
    job in the shared CPU pool, started only while ``busy()`` (interactive renders, prefetch) is false,
    so it takes at most ``threads`` cores and yields to readers within one frame's time (~30 ms for a
    512x512 J2K slice). ``cpu`` and ``io`` run a callable in the server's pools."""

    def __init__(
        self,
        archive: Archive,
        policy: RenditionPolicy,
        *,
        cpu: Callable[..., Awaitable[Any]],
        io: Callable[..., Awaitable[Any]],
        busy: Callable[[], bool] = lambda: False,
        threads: int = 1,
        idle_seconds: float = 2.0,
        pause_seconds: float = 0.02,
        rescan_seconds: float = 600.0,
    ) -> None:
        self.archive, self.policy = archive, policy
        self._cpu, self._io, self._busy = cpu, io, busy
        self.threads = max(1, threads)
        self.idle_seconds, self.pause_seconds, self.rescan_seconds = idle_seconds, pause_seconds, rescan_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock_fd: int | None = None
        self.idle = asyncio.Event()  # set whenever the backlog is empty (tests, CLI feedback)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def kick(self) -> None:
        """New instances were stored: look for work now instead of at the next idle poll."""
        self._wake.set()

    async def aclose(self) -> None:
        """Stop: cancel the loop (a frame job already in the CPU pool finishes on its own, and its
        result is dropped: the instance stays in the backlog) and release the archive's lock."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def _run(self) -> None:
        while self._lock_fd is None:
            self._lock_fd = await self._io(try_lock, self.archive.root)
            if self._lock_fd is None:  # another process transcodes; take over if it stops
                await asyncio.sleep(30)
        backlog = await self._io(Backlog, self.archive, self.policy)
        await self._refresh_gauge()
        loop = asyncio.get_running_loop()
        walked = loop.time()
        while True:
            try:
                page = await self._io(backlog.next_page)
            except Exception:
                log.exception("rendition backlog query failed; retrying in %s s", self.idle_seconds)
                await asyncio.sleep(self.idle_seconds)
                continue
            if not page:
                if not self.idle.is_set():  # the count scans the index: once per drained backlog
                    await self._refresh_gauge()
                    self.idle.set()
                if loop.time() - walked > self.rescan_seconds:
                    backlog.rewind()
                    walked = loop.time()
                    continue
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.idle_seconds)
                except TimeoutError:
                    pass
                continue
            self.idle.clear()
            queue = iter(page)
            results = await asyncio.gather(
                *(self._consume(queue) for _ in range(self.threads)), return_exceptions=True
            )
            for result in results:
                if isinstance(result, Exception):
                    log.error("rendition worker step failed", exc_info=result)

    async def _consume(self, queue: Any) -> None:
        for record in queue:  # a shared iterator: each record goes to exactly one consumer
            try:
                outcome = await self._instance(record)
            except asyncio.CancelledError:
                raise
            except (OSError, ArchiveError) as exc:  # e.g. a missing blob: retried at the next walk
                log.warning("rendition of blob %s failed: %s", record.blob_key, exc)
                outcome = "failed"
            except Exception:  # a bug: one bad instance must not stop the worker
                log.exception("rendition of blob %s failed", record.blob_key)
                outcome = "failed"
            RENDITIONS.labels(outcome).inc()
            BACKLOG.dec()

    async def _instance(self, record: InstanceRecord) -> str:
        info = record.frame_info
        if info is None:
            return "gone"
        streams = []
        for n in range(1, record.number_of_frames + 1):
            while self._busy():  # readers first: wait until no interactive render is in flight
                await asyncio.sleep(self.pause_seconds)
            data = await self._io(self.archive.frame, record, n)
            try:
                streams.append(await self._cpu(transcode_frame, data, info))
            except (RenditionNotExact, DecodeError, UnsupportedTransferSyntax) as exc:
                return str(await self._io(_skip, self.archive, record, exc))
        return "done" if await self._io(store_rendition, self.archive, record, streams) else "gone"

    async def _refresh_gauge(self) -> None:
        stats = await self._io(self.archive.index.rendition_stats, self.policy.syntaxes, self.policy.modalities)
        BACKLOG.set(stats.backlog)
