"""The archive as the web layer sees it: store (ingest), read frames and files, delete.

Ties parse, storage and index together and keeps their invariants: a blob is written (atomically)
before the index points at it, a rejected instance leaves nothing behind, and a deleted instance's blob
goes only after the index has forgotten it. Must not know HTTP.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from dataclasses import dataclass, replace
from pathlib import Path

from archive.errors import (
    ArchiveError,
    IngestError,
    InstanceConflict,
    InstanceTooLarge,
    InvalidInstance,
    NotFound,
    StudyMismatch,
)
from archive.index import InstanceConflictError, InstanceRecord, SQLiteIndex, StaleBlobError, StoreOutcome
from archive.parse import ParsedInstance
from archive.parsepool import parse_all
from archive.storage import LocalStorage, derived_key, new_key
from render.frameinfo import FrameInfo

log = logging.getLogger(__name__)
#: ``derived_key`` purpose of an instance's HTJ2K rendition blob (archive/renditions.py).
RENDITION_PURPOSE = "rendition-htj2k"


@dataclass(frozen=True, slots=True)
class StoreResult:
    """The outcome of storing one instance, as STOW-RS reports it (PS3.18 10.5.3)."""

    status: str  # "stored", "present", "replaced" or "failed"
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
    failure_reason: int = 0
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass(frozen=True, slots=True)
class ArchiveConfig:
    durable: bool = True  # fsync blobs and the index before answering
    overwrite: bool = False  # same SOP Instance UID with other bytes replaces instead of conflicting
    max_instance_bytes: int = 2 << 30
    max_pixel_bytes: int = 4 << 30  # declared (uncompressed) pixel data per instance
    parse_processes: int = 0  # worker processes parsing received instances; 0 = in the calling thread


class Archive:
    """Local archive: files under ``root/objects`` and the SQLite index ``root/index.sqlite``."""

    def __init__(self, root: Path, config: ArchiveConfig) -> None:
        self.root = Path(root)
        self.config = config
        self.root.mkdir(parents=True, exist_ok=True)
        self.storage = LocalStorage(self.root)
        self.index = SQLiteIndex(self.root / "index.sqlite", durable=config.durable)

    # -- ingest -----------------------------------------------------------------------------------

    def store(self, blobs: list[bytes], *, expected_study: str | None = None) -> list[StoreResult]:
        """Validate, store and index each blob; one bad blob never affects the others.

        The blobs of one call share one index transaction and one round of fsyncs.
        """
        results: list[StoreResult | None] = [None] * len(blobs)
        sized: list[int] = []
        for i, data in enumerate(blobs):
            if len(data) > self.config.max_instance_bytes:  # refused before it is written or copied
                results[i] = _failed(InstanceTooLarge(
                    f"instance of {len(data)} bytes is above the limit of {self.config.max_instance_bytes} bytes"))
            else:
                sized.append(i)
        # With parser processes the blobs are written first, to temporary files those processes read
        # (a pipe carried 530 KB slices slower than parsing them); the accepted ones are then renamed
        # into place and the others removed. Without, only accepted blobs are ever written.
        staged: dict[int, Path] = {}
        if self.config.parse_processes > 0 and sized:
            try:
                paths = self.storage.stage([blobs[i] for i in sized], durable=self.config.durable)
            except OSError as exc:
                log.exception("staging %d blobs failed", len(sized))
                for i in sized:
                    results[i] = _failed(IngestError(f"storage failure: {exc.strerror}"), None, 0xA700)
                return [r for r in results if r is not None]
            staged = dict(zip(sized, paths, strict=True))
        try:
            return self._store_checked(blobs, sized, staged, results, expected_study)
        finally:
            self.storage.discard(list(staged.values()))

    def _store_checked(
        self, blobs: list[bytes], sized: list[int], staged: dict[int, Path], results: list[StoreResult | None],
        expected_study: str | None,
    ) -> list[StoreResult]:
        checked = parse_all([blobs[i] for i in sized], [staged[i] for i in sized] if staged else None,
                            max_pixel_bytes=self.config.max_pixel_bytes, processes=self.config.parse_processes)
        parsed_items: list[tuple[int, ParsedInstance, bytes]] = []
        for i, check in zip(sized, checked, strict=True):
            if isinstance(check, IngestError):
                results[i] = _failed(check)
            elif expected_study is not None and check.study_uid != expected_study:
                results[i] = _failed(StudyMismatch(
                    f"(0020,000D) 'StudyInstanceUID' {check.study_uid} does not match the study {expected_study} "
                    f"of the request URL",
                    check.sop_class_uid,
                    check.sop_uid,
                ))
            else:
                parsed_items.append((i, check, blobs[i]))
        existing = self.index.existing_blobs([p.sop_uid for _i, p, _d in parsed_items])
        accepted: list[tuple[int, ParsedInstance, str, bytes]] = []
        to_write: list[tuple[str, int]] = []  # (new key, index of its blob)
        batch_keys: dict[str, tuple[str, bytes]] = {}  # SOP UID -> key and bytes earlier in this call
        for i, parsed, data in parsed_items:
            key = self._key_for(parsed.sop_uid, data, batch_keys, existing.get(parsed.sop_uid))
            if key is None:
                key = new_key()
                to_write.append((key, i))
            batch_keys.setdefault(parsed.sop_uid, (key, data))
            accepted.append((i, parsed, key, data))
        if to_write:
            try:
                if staged:
                    self.storage.commit([(key, staged[i]) for key, i in to_write], durable=self.config.durable)
                else:
                    self.storage.put_many([(key, blobs[i]) for key, i in to_write], durable=self.config.durable)
            except OSError as exc:
                log.exception("writing %d blobs failed", len(to_write))
                for key, _i in to_write:
                    with contextlib.suppress(OSError):  # renamed before the failure: not indexed, not kept
                        self.storage.delete(key)
                for i, parsed, _key, _data in accepted:
                    results[i] = _failed(IngestError(f"storage failure: {exc.strerror}"), parsed, 0xA700)
                return [r for r in results if r is not None]
        written = {key for key, _i in to_write}
        try:
            outcomes = self._index_items(accepted, written)
        except (OSError, sqlite3.Error) as exc:
            # The index refused the whole batch: drop the blobs written for it, nothing is half-stored.
            log.exception("indexing %d instances failed", len(accepted))
            for key in written:
                self.storage.delete(key)
            for i, parsed, _key, _data in accepted:
                results[i] = _failed(IngestError(f"processing failure: {exc}"), parsed, 0x0110)
            return [r for r in results if r is not None]
        for (i, parsed, key, _data), outcome in zip(accepted, outcomes):
            if isinstance(outcome, ArchiveError):
                if key in written:
                    self._delete_if_unused(key)
                error = outcome if isinstance(outcome, IngestError) else InstanceConflict(str(outcome))
                results[i] = _failed(error, parsed)
                continue
            if outcome.previous_blob_key and not self.index.blob_in_use(outcome.previous_blob_key):
                self._delete_blob(outcome.previous_blob_key)
            results[i] = StoreResult(
                outcome.status, parsed.sop_class_uid, parsed.sop_uid, parsed.study_uid, parsed.series_uid
            )
        return [r for r in results if r is not None]

    def _delete_if_unused(self, key: str) -> None:
        # When the index cannot say (it is failing too), the blob stays: an unreferenced file is
        # harmless, an index entry without its file is not.
        with contextlib.suppress(OSError, sqlite3.Error):
            if not self.index.blob_in_use(key):
                self.storage.delete(key)

    def _index_items(
        self, accepted: list[tuple[int, ParsedInstance, str, bytes]], written: set[str]
    ) -> list[StoreOutcome | ArchiveError]:
        """Index the accepted items; an item whose reused copy was deleted meanwhile (a DELETE
        between the duplicate check and the write transaction) is written afresh and indexed again.
        ``accepted`` and ``written`` are updated with the fresh keys."""
        reused = frozenset(key for _i, _p, key, _d in accepted if key not in written)
        outcomes = self.index.add_many(
            [(parsed, key, len(data)) for _i, parsed, key, data in accepted],
            overwrite=self.config.overwrite,
            reused=reused,
        )
        stale = [n for n, outcome in enumerate(outcomes) if isinstance(outcome, StaleBlobError)]
        if stale:
            fresh = {n: new_key() for n in stale}
            written.update(fresh.values())
            for n in stale:
                i, parsed, _key, data = accepted[n]
                accepted[n] = (i, parsed, fresh[n], data)
            try:
                self.storage.put_many([(fresh[n], accepted[n][3]) for n in stale], durable=self.config.durable)
                again: list[StoreOutcome | ArchiveError] = self.index.add_many(
                    [(accepted[n][1], fresh[n], len(accepted[n][3])) for n in stale], overwrite=self.config.overwrite
                )
            except (OSError, sqlite3.Error) as exc:
                # The first transaction is committed: only the re-written items fail, and only their
                # fresh blobs go (the caller's clean-up of the whole batch is for that transaction).
                log.exception("re-writing %d instances whose copy was deleted meanwhile failed", len(stale))
                failure = IngestError(f"processing failure: {exc}")
                failure.failure_reason = 0x0110
                again = [failure] * len(stale)
            for n, outcome in zip(stale, again, strict=True):
                outcomes[n] = outcome
        return outcomes

    def _key_for(
        self, sop_uid: str, data: bytes, batch: dict[str, tuple[str, bytes]], existing: str | None
    ) -> str | None:
        """The key of an identical copy already stored (or earlier in this call), else None.

        Identical bytes are recognised by comparing them, which costs a read only on a resend; no
        hash is computed on the ingest path.
        """
        if sop_uid in batch:
            key, earlier = batch[sop_uid]
            return key if earlier == data else None
        if existing is not None and self.storage.same_content(existing, data):
            return existing
        return None

    # -- reads ------------------------------------------------------------------------------------

    def frame(self, record: InstanceRecord, number: int) -> bytes:
        """The stored bytes of frame ``number`` (1-based): a codestream, or native pixel bytes.

        One positioned read spanning the frame's fragments. Raises NotFound past the last frame.
        """
        n_frames = record.number_of_frames
        if record.frame_info is None:
            raise NotFound(f"instance {record.sop_uid} has no pixel data")
        if not 1 <= number <= n_frames:
            raise NotFound(f"frame {number} of instance {record.sop_uid} does not exist: it has {n_frames} frames")
        if record.frames is None:
            return self._frame_by_parsing(record, number)
        fragments = record.frames[number - 1]
        if len(fragments) == 1:
            return self.storage.read_range(record.blob_key, fragments[0].offset, fragments[0].length)
        start = fragments[0].offset
        span = self.storage.read_range(record.blob_key, start, fragments[-1].offset + fragments[-1].length - start)
        view = memoryview(span)
        return b"".join(view[f.offset - start : f.offset - start + f.length] for f in fragments)

    def _frame_by_parsing(self, record: InstanceRecord, number: int) -> bytes:
        # Deflated files and 1-bit frames have no byte offsets: parse the file (rare, never hot).
        from archive.transcode import native_frame_from_file

        return native_frame_from_file(self.storage.read_all(record.blob_key), record, number)

    def read_file(self, record: InstanceRecord) -> bytes:
        return self.storage.read_all(record.blob_key)

    def render_source(self, record: InstanceRecord, number: int) -> tuple[bytes, FrameInfo]:
        """The bytes to decode for frame ``number`` and their FrameInfo: the instance's verified HTJ2K
        rendition when it has one (same pixels, faster decode), else the stored frame.

        A rendition blob that went missing falls back to the original (logged). Raises NotFound.
        """
        info = record.frame_info
        rendition = record.rendition
        if info is None or rendition is None or not 1 <= number <= len(rendition.frames):
            return self.frame(record, number), self._info(record)
        span = rendition.frames[number - 1]
        try:
            data = self.storage.read_range(rendition.key, span.offset, span.length)
        except (NotFound, ArchiveError):
            log.warning("rendition %s of blob %s is unreadable; using the original", rendition.key, record.blob_key)
            return self.frame(record, number), info
        return data, replace(info, transfer_syntax_uid=rendition.syntax)

    @staticmethod
    def _info(record: InstanceRecord) -> FrameInfo:
        if record.frame_info is None:
            raise NotFound(f"instance {record.sop_uid} has no pixel data")
        return record.frame_info

    # -- delete -----------------------------------------------------------------------------------

    def delete(self, study: str, series: str | None = None, sop: str | None = None) -> int:
        """Delete from the index, then the blobs; returns the number of instances removed."""
        keys = self.index.delete(study, series, sop)
        for key in keys:
            if not self.index.blob_in_use(key):
                self._delete_blob(key)
        return len(keys)

    def _delete_blob(self, key: str) -> None:
        """Remove a stored version and its rendition (whose index row went with the instance's)."""
        self.storage.delete(key)
        self.storage.delete(derived_key(key, RENDITION_PURPOSE))

    def sweep_orphans(self, min_age_seconds: float = 3600.0) -> int:
        """Remove blobs the index does not reference (left by a crash between write and index).

        Only blobs older than ``min_age_seconds``: on a live server another worker may have written a
        blob it has not indexed yet, and that takes milliseconds, never an hour.
        """
        cutoff = time.time() - min_age_seconds
        referenced = self.index.all_blob_keys()
        removed = 0
        for path in self.storage.objects.glob("*/*"):
            try:
                old = path.stat().st_mtime < cutoff
            except FileNotFoundError:
                continue
            if old and path.name not in referenced:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def _failed(exc: IngestError, parsed: ParsedInstance | None = None, reason: int | None = None) -> StoreResult:
    return StoreResult(
        "failed",
        parsed.sop_class_uid if parsed else exc.sop_class_uid,
        parsed.sop_uid if parsed else exc.sop_instance_uid,
        parsed.study_uid if parsed else "",
        parsed.series_uid if parsed else "",
        reason if reason is not None else exc.failure_reason,
        str(exc),
    )


__all__ = ["Archive", "ArchiveConfig", "InstanceConflictError", "InvalidInstance", "StoreResult"]
