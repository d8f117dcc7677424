"""The index side of fast-decode renditions: the ``renditions`` table, its migration and its queries.

A rendition row is keyed by the original's storage key (``blob_key``), i.e. by one stored version of
an instance: a replaced instance has a new key, so its old rendition can never be used for it, and
deleting the instance's row (``SQLiteIndex._delete_instances``) deletes the rendition row in the same
transaction. A row with ``status='done'`` is written only after its blob is in place; ``'skipped'``
rows remember instances that cannot be transcoded exactly, so they are not retried after a restart.

Mixed into ``SQLiteIndex`` (it uses its connections); must not touch blob storage or decode pixels.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from archive.parse import Fragment

#: Schema version 1 -> 2: the renditions table (and an index to find the backlog by syntax).
MIGRATION_1_TO_2 = (
    """CREATE TABLE IF NOT EXISTS renditions (
        blob_key TEXT PRIMARY KEY,
        rendition_key TEXT,
        syntax TEXT NOT NULL,
        frame_table BLOB,
        bytes INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX IF NOT EXISTS instances_syntax ON instances(transfer_syntax_uid)",
)


@dataclass(frozen=True, slots=True)
class Rendition:
    """Where an instance's fast-decode copy lives: blob key, its transfer syntax, one byte span per frame."""

    key: str
    syntax: str
    frames: tuple[Fragment, ...]


@dataclass(frozen=True, slots=True)
class RenditionStats:
    done: int
    skipped: int
    backlog: int
    bytes: int  # rendition blobs
    original_bytes: int  # the originals those renditions were made from


def encode_spans(frames: list[Fragment]) -> bytes:
    """Pack (offset, length) per frame as little-endian uint64 pairs."""
    return struct.pack(f"<{2 * len(frames)}Q", *(v for f in frames for v in (f.offset, f.length)))


def decode_spans(blob: bytes) -> tuple[Fragment, ...]:
    values = struct.unpack(f"<{len(blob) // 8}Q", blob)
    return tuple(Fragment(values[i], values[i + 1]) for i in range(0, len(values), 2))


def _backlog_where(syntaxes: frozenset[str], modalities: frozenset[str] | None) -> tuple[str, list[Any]]:
    marks = ",".join("?" * len(syntaxes))
    where = (
        f"i.transfer_syntax_uid IN ({marks}) AND i.frame_info IS NOT NULL AND i.frame_table IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM renditions r WHERE r.blob_key=i.blob_key)"
    )
    params: list[Any] = sorted(syntaxes)
    if modalities:
        where += f" AND s.modality IN ({','.join('?' * len(modalities))})"
        params += sorted(modalities)
    return where, params


class RenditionIndexMixin:
    """Rendition queries of ``SQLiteIndex``; see the module docstring for the invariants."""

    if TYPE_CHECKING:  # provided by SQLiteIndex

        def _conn(self) -> sqlite3.Connection: ...
        def _connect(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _records(self, where: str, params: tuple[Any, ...]) -> list[Any]: ...

    def backlog_page(
        self,
        syntaxes: frozenset[str],
        modalities: frozenset[str] | None,
        *,
        above: int | None = None,
        below: int | None = None,
        limit: int = 32,
    ) -> list[tuple[int, Any]]:
        """(pk, InstanceRecord) of instances still to transcode, by internal key: ascending above
        ``above`` (new arrivals) or descending below ``below`` (the older backlog, newest first)."""
        where, params = _backlog_where(syntaxes, modalities)
        if above is not None:
            where += " AND i.pk>?"
            params.append(above)
            order = "i.pk ASC"
        else:
            where += " AND i.pk<?"
            params.append(below if below is not None else 1 << 62)
            order = "i.pk DESC"
        rows = self._conn().execute(
            f"SELECT i.pk, i.sop_uid FROM instances i JOIN series s ON s.pk=i.series_pk WHERE {where} "
            f"ORDER BY {order} LIMIT ?",
            (*params, limit),
        ).fetchall()
        out = []
        for pk, _sop in rows:
            records = self._records("i.pk=?", (pk,))
            if records:
                out.append((int(pk), records[0]))
        return out

    def max_instance_pk(self) -> int:
        row = self._conn().execute("SELECT MAX(pk) FROM instances").fetchone()
        return int(row[0] or 0)

    def add_rendition(self, blob_key: str, rendition_key: str, syntax: str, frames: list[Fragment]) -> bool:
        """Record a rendition whose blob is already stored; False (nothing written) when the original
        is no longer indexed (deleted or replaced meanwhile), so the caller drops the blob."""
        size = sum(f.length for f in frames)
        with self._connect() as conn:
            cur = conn.execute(
                "INSERT OR REPLACE INTO renditions (blob_key, rendition_key, syntax, frame_table, bytes, status, "
                "reason) SELECT ?, ?, ?, ?, ?, 'done', '' WHERE EXISTS (SELECT 1 FROM instances WHERE blob_key=?)",
                (blob_key, rendition_key, syntax, encode_spans(frames), size, blob_key),
            )
            if cur.rowcount > 0:
                # Readers that remember a series' records (prefetch) re-read them when this changes,
                # so they start using the new rendition. (Imported here: archive.index imports us.)
                from archive.index import _bump_generation

                _bump_generation(conn)
            return cur.rowcount > 0

    def skip_rendition(self, blob_key: str, syntax: str, reason: str) -> None:
        """Remember that this stored version cannot get an exact rendition (not retried)."""
        with self._connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO renditions (blob_key, rendition_key, syntax, frame_table, bytes, status, "
                "reason) SELECT ?, NULL, ?, NULL, 0, 'skipped', ? WHERE EXISTS "
                "(SELECT 1 FROM instances WHERE blob_key=?)",
                (blob_key, syntax, reason[:500], blob_key),
            )

    def rendition_keys(self) -> Iterator[str]:
        for (key,) in self._conn().execute("SELECT rendition_key FROM renditions WHERE rendition_key IS NOT NULL"):
            yield key

    def rendition_stats(self, syntaxes: frozenset[str], modalities: frozenset[str] | None) -> RenditionStats:
        """Counts and sizes for the CLI and /metrics (the backlog count scans the slow-syntax instances)."""
        conn = self._conn()
        done, skipped, size, original = conn.execute(
            "SELECT COALESCE(SUM(r.status='done'),0), COALESCE(SUM(r.status='skipped'),0), "
            "COALESCE(SUM(r.bytes),0), COALESCE(SUM(CASE WHEN r.status='done' THEN i.size END),0) "
            "FROM renditions r JOIN instances i ON i.blob_key=r.blob_key"
        ).fetchone()
        where, params = _backlog_where(syntaxes, modalities)
        (backlog,) = conn.execute(
            f"SELECT COUNT(*) FROM instances i JOIN series s ON s.pk=i.series_pk WHERE {where}", params
        ).fetchone()
        return RenditionStats(int(done), int(skipped), int(backlog), int(size), int(original))


def delete_renditions_of(conn: sqlite3.Connection, blob_keys: list[str]) -> None:
    """Drop the rendition rows of originals whose instances were just deleted (same transaction).
    Their blobs go after the commit (``Archive``), like the originals'."""
    conn.executemany(
        "DELETE FROM renditions WHERE blob_key=? AND NOT EXISTS (SELECT 1 FROM instances WHERE blob_key=?)",
        [(k, k) for k in blob_keys],
    )
