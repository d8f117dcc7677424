"""The SQLite index of patients, studies, series and instances (WAL mode, versioned schema).

Holds the attributes QIDO-RS matches on, each instance's storage key, pixel description (FrameInfo
JSON), frame byte table and DICOM JSON metadata, so retrieve and render never parse a stored file to
find their bytes. ``Index`` is the protocol the rest of the code uses, so PostgreSQL can be added beside
``SQLiteIndex``. Must not touch blob storage or know HTTP.
"""

from __future__ import annotations

import fcntl
import functools
import os
import sqlite3
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from archive.errors import ArchiveError, NotFound
from archive.parse import Fragment, ParsedInstance
from archive.query import Query, build_sql, normalize_time
from archive.rendition_index import (
    MIGRATION_1_TO_2,
    Rendition,
    RenditionIndexMixin,
    decode_spans,
    delete_renditions_of,
)
from render.frameinfo import FrameInfo

SCHEMA_VERSION = 2
#: Statements that take a schema from version N to N+1, applied in order inside one transaction.
_MIGRATIONS: dict[int, tuple[str, ...]] = {1: MIGRATION_1_TO_2}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS patients (
    pk INTEGER PRIMARY KEY,
    patient_id TEXT NOT NULL,
    patient_name TEXT NOT NULL,
    UNIQUE (patient_id, patient_name)
);
CREATE TABLE IF NOT EXISTS studies (
    pk INTEGER PRIMARY KEY,
    patient_pk INTEGER NOT NULL REFERENCES patients(pk),
    study_uid TEXT NOT NULL UNIQUE,
    patient_name TEXT, patient_name_uc TEXT, patient_id TEXT, patient_birth_date TEXT, patient_sex TEXT,
    study_date TEXT, study_time TEXT, accession_number TEXT, study_id TEXT, study_description TEXT,
    referring_physician_name TEXT, referring_physician_name_uc TEXT, institution_name TEXT,
    timezone_offset TEXT, charset TEXT,
    num_series INTEGER NOT NULL DEFAULT 0, num_instances INTEGER NOT NULL DEFAULT 0,
    modalities TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS studies_date ON studies(study_date, study_time);
CREATE INDEX IF NOT EXISTS studies_patient_id ON studies(patient_id);
CREATE INDEX IF NOT EXISTS studies_patient_name ON studies(patient_name_uc);
CREATE INDEX IF NOT EXISTS studies_accession ON studies(accession_number);
CREATE TABLE IF NOT EXISTS series (
    pk INTEGER PRIMARY KEY,
    study_pk INTEGER NOT NULL REFERENCES studies(pk),
    series_uid TEXT NOT NULL UNIQUE,
    modality TEXT, series_description TEXT, series_number INTEGER, body_part_examined TEXT,
    series_date TEXT, series_time TEXT, pps_start_date TEXT, pps_start_time TEXT, charset TEXT,
    num_instances INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS series_study ON series(study_pk, series_number);
CREATE INDEX IF NOT EXISTS series_modality ON series(modality);
CREATE TABLE IF NOT EXISTS instances (
    pk INTEGER PRIMARY KEY,
    series_pk INTEGER NOT NULL REFERENCES series(pk),
    study_pk INTEGER NOT NULL REFERENCES studies(pk),
    sop_uid TEXT NOT NULL UNIQUE,
    sop_class_uid TEXT NOT NULL,
    instance_number INTEGER, rows INTEGER, columns INTEGER, bits_allocated INTEGER,
    number_of_frames INTEGER, content_date TEXT, content_time TEXT, charset TEXT,
    transfer_syntax_uid TEXT NOT NULL,
    blob_key TEXT NOT NULL,
    size INTEGER NOT NULL,
    frame_info TEXT,
    frame_table BLOB,
    metadata TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_pk, instance_number);
CREATE INDEX IF NOT EXISTS instances_study ON instances(study_pk);
"""


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """One stored instance as retrieve and render need it (no attributes, no metadata)."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    blob_key: str
    size: int
    frame_info: FrameInfo | None
    frames: tuple[tuple[Fragment, ...], ...] | None
    #: The verified fast-decode copy of the pixels (archive/renditions.py), when one has been made.
    rendition: Rendition | None = None

    @property
    def number_of_frames(self) -> int:
        return self.frame_info.number_of_frames if self.frame_info else 0


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    status: str  # "stored", "present" (identical bytes already there), "replaced"
    previous_blob_key: str | None = None


class StaleBlobError(ArchiveError):
    """Raised by ``add_many`` when a reused key's row disappeared before the write transaction."""


class InstanceConflictError(ArchiveError):
    """Raised by ``add`` when the SOP Instance UID is stored with other bytes and overwrite is off."""


class Index(Protocol):
    """What the archive and the web layer use of an index; SQLiteIndex implements it."""

    def add_many(
        self, items: Sequence[tuple[ParsedInstance, str, int]], *, overwrite: bool, reused: frozenset[str] = ...
    ) -> list[StoreOutcome | ArchiveError]: ...
    def existing_blobs(self, sop_uids: list[str]) -> dict[str, str]: ...
    def instance(self, study: str, series: str | None, sop: str) -> InstanceRecord: ...
    def instances(self, study: str, series: str | None = None) -> list[InstanceRecord]: ...
    def metadata(self, study: str, series: str | None = None, sop: str | None = None) -> list[str]: ...
    def metadata_by_pk(self, pks: list[int]) -> dict[int, str]: ...
    def search(self, query: Query) -> list[dict[str, Any]]: ...
    def delete(self, study: str, series: str | None = None, sop: str | None = None) -> list[str]: ...
    def generation(self) -> int: ...
    def data_version(self) -> int: ...
    def blob_in_use(self, key: str) -> bool: ...
    def all_blob_keys(self) -> set[str]: ...


def encode_frame_table(frames: tuple[tuple[Fragment, ...], ...] | None) -> bytes | None:
    """Pack as uint64: frame count, fragment count per frame, then (offset, length) pairs."""
    if frames is None:
        return None
    counts = [len(f) for f in frames]
    flat = [v for frame in frames for frag in frame for v in (frag.offset, frag.length)]
    return struct.pack(f"<{1 + len(counts) + len(flat)}Q", len(frames), *counts, *flat)


def decode_frame_table(blob: bytes | None) -> tuple[tuple[Fragment, ...], ...] | None:
    if blob is None:
        return None
    values = struct.unpack(f"<{len(blob) // 8}Q", blob)
    n = values[0]
    counts = values[1 : 1 + n]
    pos = 1 + n
    frames = []
    for count in counts:
        frames.append(tuple(Fragment(values[pos + 2 * i], values[pos + 2 * i + 1]) for i in range(count)))
        pos += 2 * count
    return tuple(frames)


class SQLiteIndex(RenditionIndexMixin):
    """The index in one SQLite file, one connection per thread, writes serialised by SQLite."""

    def __init__(self, path: Path, *, durable: bool = True) -> None:
        self.path = Path(path)
        self.durable = durable
        self._local = threading.local()
        self._thread_lock = threading.Lock()
        self._lock_fd: int | None = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._conn().executescript(_SCHEMA)  # executescript commits by itself: outside _connect
        with self._connect() as conn:
            # Re-read inside the write lock: several --workers processes may open a v1 index at once.
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = 1 if row is None else int(row[0])  # _SCHEMA is version 1; migrations add the rest
            if version > SCHEMA_VERSION:
                raise ArchiveError(
                    f"index schema version {version} at {self.path} is newer than this server's "
                    f"{SCHEMA_VERSION}: upgrade Tessera"
                )
            while version < SCHEMA_VERSION:
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
                version += 1
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (str(version),),
            )

    # -- connections ------------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
            conn.execute("PRAGMA foreign_keys=ON")
            # TM values are stored as received; range matching compares their normalised form.
            conn.create_function("tm_norm", 1, normalize_time, deterministic=True)
            conn.execute("PRAGMA cache_size=-65536")
            conn.execute("PRAGMA mmap_size=268435456")
            self._local.conn = conn
        return conn

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A write transaction. Writers of all processes queue on an flock first: SQLite's own busy
        handler sleeps 1, 2, 5, 10... ms between retries, which idles worker processes that collide."""
        conn = self._conn()
        lock_fd = self._lock_fd
        if lock_fd is None:
            raise ArchiveError("the index is closed")
        with self._thread_lock:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close this thread's connection and the writers' lock file."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- writes -----------------------------------------------------------------------------------

    def existing_blobs(self, sop_uids: list[str]) -> dict[str, str]:
        """SOP Instance UID -> storage key of those already stored (one query for a whole batch)."""
        out: dict[str, str] = {}
        for start in range(0, len(sop_uids), 500):
            chunk = sop_uids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT sop_uid, blob_key FROM instances WHERE sop_uid IN ({marks})"
            out.update(self._conn().execute(sql, chunk).fetchall())
        return out

    def add_many(
        self,
        items: Sequence[tuple[ParsedInstance, str, int]],
        *,
        overwrite: bool,
        reused: frozenset[str] = frozenset(),
    ) -> list[StoreOutcome | ArchiveError]:
        """Index several stored blobs in one transaction; per item an outcome or the error it raised.

        ``reused`` are keys the caller did not write because an identical copy was already indexed
        under them; if that row is gone by now (a DELETE in between), the item fails with
        StaleBlobError instead of pointing the index at a blob that may have been removed.
        """
        results: list[StoreOutcome | ArchiveError] = []
        with self._connect() as conn:
            touched_studies: set[int] = set()
            for parsed, key, size in items:
                conn.execute("SAVEPOINT item")
                try:
                    outcome, study_pk = self._add(conn, parsed, key, size, overwrite, key in reused)
                except ArchiveError as exc:
                    conn.execute("ROLLBACK TO item")
                    conn.execute("RELEASE item")
                    results.append(exc)
                    continue
                conn.execute("RELEASE item")
                touched_studies.add(study_pk)
                results.append(outcome)
            for study_pk in touched_studies:
                _refresh_study_counts(conn, study_pk)
            if touched_studies:
                _bump_generation(conn)
        return results

    def _add(
        self, conn: sqlite3.Connection, p: ParsedInstance, key: str, size: int, overwrite: bool, reused: bool
    ) -> tuple[StoreOutcome, int]:
        a = p.attributes
        existing = conn.execute(
            "SELECT i.pk, i.blob_key, s.series_uid, st.study_uid FROM instances i "
            "JOIN series s ON s.pk=i.series_pk JOIN studies st ON st.pk=i.study_pk WHERE i.sop_uid=?",
            (p.sop_uid,),
        ).fetchone()
        previous = None
        if reused and (existing is None or existing[1] != key):
            raise StaleBlobError(f"the stored copy of SOP Instance {p.sop_uid} went away meanwhile")
        if existing is not None:
            if existing[1] == key:
                study_pk = conn.execute("SELECT study_pk FROM instances WHERE pk=?", (existing[0],)).fetchone()[0]
                return StoreOutcome("present"), study_pk
            if not overwrite:
                raise InstanceConflictError(
                    f"SOP Instance {p.sop_uid} is already stored with different content"
                )
            previous = existing[1]
            self._delete_instances(conn, "i.pk=?", (existing[0],))
        patient_pk = _upsert(
            conn,
            "patients",
            ("patient_id", "patient_name"),
            (a.get("PatientID", ""), a.get("PatientName", "")),
            {},
        )
        study_pk = _upsert(
            conn,
            "studies",
            ("study_uid",),
            (p.study_uid,),
            {
                "patient_pk": patient_pk,
                "patient_name": a.get("PatientName"),
                "patient_name_uc": (a.get("PatientName") or "").upper(),
                "patient_id": a.get("PatientID"),
                "patient_birth_date": a.get("PatientBirthDate"),
                "patient_sex": a.get("PatientSex"),
                "study_date": a.get("StudyDate"),
                "study_time": a.get("StudyTime"),
                "accession_number": a.get("AccessionNumber"),
                "study_id": a.get("StudyID"),
                "study_description": a.get("StudyDescription"),
                "referring_physician_name": a.get("ReferringPhysicianName"),
                "referring_physician_name_uc": (a.get("ReferringPhysicianName") or "").upper(),
                "institution_name": a.get("InstitutionName"),
                "timezone_offset": a.get("TimezoneOffsetFromUTC"),
                "charset": a.get("SpecificCharacterSet"),
            },
        )
        series_pk = _upsert(
            conn,
            "series",
            ("series_uid",),
            (p.series_uid,),
            {
                "study_pk": study_pk,
                "modality": a.get("Modality"),
                "series_description": a.get("SeriesDescription"),
                "series_number": a.get("SeriesNumber"),
                "body_part_examined": a.get("BodyPartExamined"),
                "series_date": a.get("SeriesDate"),
                "series_time": a.get("SeriesTime"),
                "pps_start_date": a.get("PerformedProcedureStepStartDate"),
                "pps_start_time": a.get("PerformedProcedureStepStartTime"),
                "charset": a.get("SpecificCharacterSet"),
            },
        )
        owner = conn.execute("SELECT study_pk FROM series WHERE pk=?", (series_pk,)).fetchone()[0]
        if owner != study_pk:
            raise InstanceConflictError(
                f"Series {p.series_uid} already belongs to another study than {p.study_uid}"
            )
        conn.execute(
            "INSERT INTO instances (series_pk, study_pk, sop_uid, sop_class_uid, instance_number, rows, columns, "
            "bits_allocated, number_of_frames, content_date, content_time, charset, transfer_syntax_uid, "
            "blob_key, size, frame_info, frame_table, metadata) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                series_pk,
                study_pk,
                p.sop_uid,
                p.sop_class_uid,
                a.get("InstanceNumber"),
                a.get("Rows"),
                a.get("Columns"),
                a.get("BitsAllocated"),
                p.frame_info.number_of_frames if p.frame_info else a.get("NumberOfFrames"),
                a.get("ContentDate"),
                a.get("ContentTime"),
                a.get("SpecificCharacterSet"),
                p.transfer_syntax_uid,
                key,
                size,
                p.frame_info.to_json() if p.frame_info else None,
                encode_frame_table(p.frames),
                p.metadata_json,
            ),
        )
        conn.execute(
            "UPDATE series SET num_instances = num_instances + 1 WHERE pk=?",
            (series_pk,),
        )
        return StoreOutcome("replaced" if previous else "stored", previous), study_pk

    def delete(self, study: str, series: str | None = None, sop: str | None = None) -> list[str]:
        """Remove the matching instances (and emptied series, studies, patients); returns their blob keys.

        Raises NotFound when nothing matches.
        """
        where, params = _scope_where(study, series, sop)
        with self._connect() as conn:
            keys = self._delete_instances(conn, where, params)
            if not keys:
                raise NotFound(_scope_text(study, series, sop) + " not found")
            _bump_generation(conn)
        return keys

    def _delete_instances(self, conn: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> list[str]:
        rows = conn.execute(
            "SELECT i.pk, i.blob_key, i.series_pk, i.study_pk FROM instances i "
            "JOIN series s ON s.pk=i.series_pk JOIN studies st ON st.pk=i.study_pk WHERE " + where,
            params,
        ).fetchall()
        if not rows:
            return []
        conn.executemany("DELETE FROM instances WHERE pk=?", [(r[0],) for r in rows])
        delete_renditions_of(conn, [r[1] for r in rows])
        for series_pk in {r[2] for r in rows}:
            conn.execute(
                "UPDATE series SET num_instances=(SELECT COUNT(*) FROM instances WHERE series_pk=?) WHERE pk=?",
                (series_pk, series_pk),
            )
            conn.execute("DELETE FROM series WHERE pk=? AND num_instances=0", (series_pk,))
        for study_pk in {r[3] for r in rows}:
            _refresh_study_counts(conn, study_pk)
            conn.execute("DELETE FROM studies WHERE pk=? AND num_instances=0", (study_pk,))
        conn.execute("DELETE FROM patients WHERE pk NOT IN (SELECT patient_pk FROM studies)")
        return [r[1] for r in rows]

    # -- reads ------------------------------------------------------------------------------------

    def generation(self) -> int:
        """A number that changes with every committed store or delete (for caching query answers)."""
        row = self._conn().execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0

    def data_version(self) -> int:
        """A number that changes whenever another connection (any other thread or process) commits,
        as seen by this thread's connection, so only meaningful in a thread that never writes; read
        from the WAL index in shared memory and the mapped first page: cheap enough for the event loop's thread
        (archive/records.py uses it there)."""
        return int(self._conn().execute("PRAGMA data_version").fetchone()[0])

    def blob_in_use(self, key: str) -> bool:
        return self._conn().execute("SELECT 1 FROM instances WHERE blob_key=?", (key,)).fetchone() is not None

    def all_blob_keys(self) -> set[str]:
        """Every blob the index references: originals and renditions."""
        return {r[0] for r in self._conn().execute("SELECT blob_key FROM instances")} | set(self.rendition_keys())

    def instance(self, study: str, series: str | None, sop: str) -> InstanceRecord:
        records = self._records(*_scope_where(study, series, sop))
        if not records:
            raise NotFound(_scope_text(study, series, sop) + " not found")
        return records[0]

    def instances(self, study: str, series: str | None = None) -> list[InstanceRecord]:
        """Instances of a study or series in series/instance order; raises NotFound when none."""
        records = self._records(*_scope_where(study, series, None))
        if not records:
            raise NotFound(_scope_text(study, series, None) + " not found")
        return records

    def _records(self, where: str, params: tuple[Any, ...]) -> list[InstanceRecord]:
        rows = self._conn().execute(
            "SELECT st.study_uid, s.series_uid, i.sop_uid, i.sop_class_uid, i.transfer_syntax_uid, i.blob_key, "
            "i.size, i.frame_info, i.frame_table, r.rendition_key, r.syntax, r.frame_table FROM instances i "
            "JOIN series s ON s.pk=i.series_pk JOIN studies st ON st.pk=i.study_pk "
            "LEFT JOIN renditions r ON r.blob_key=i.blob_key AND r.status='done' WHERE " + where + _ORDER,
            params,
        ).fetchall()
        return [
            InstanceRecord(
                r[0], r[1], r[2], r[3], r[4], r[5], r[6],
                (_frame_info(r[7]) if len(r[7]) < 4096 else FrameInfo.from_json(r[7])) if r[7] else None,
                decode_frame_table(r[8]),
                Rendition(r[9], r[10], decode_spans(r[11])) if r[9] else None,
            )
            for r in rows
        ]

    def metadata(self, study: str, series: str | None = None, sop: str | None = None) -> list[str]:
        """Stored DICOM JSON of each matching instance; raises NotFound when none."""
        where, params = _scope_where(study, series, sop)
        rows = self._conn().execute(
            "SELECT i.metadata FROM instances i JOIN series s ON s.pk=i.series_pk "
            "JOIN studies st ON st.pk=i.study_pk WHERE " + where + _ORDER,
            params,
        ).fetchall()
        if not rows:
            raise NotFound(_scope_text(study, series, sop) + " not found")
        return [r[0] for r in rows]

    def metadata_by_pk(self, pks: list[int]) -> dict[int, str]:
        """Stored DICOM JSON of the instances with these internal keys."""
        wanted = sorted({pk for pk in pks if pk is not None})
        out: dict[int, str] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for pk, meta in self._conn().execute(f"SELECT pk, metadata FROM instances WHERE pk IN ({marks})", chunk):
                out[pk] = meta
        return out

    def search(self, query: Query) -> list[dict[str, Any]]:
        sql, params = build_sql(query)
        cur = self._conn().execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]



_ORDER = " ORDER BY st.pk, s.series_number, s.pk, i.instance_number, i.pk"


@functools.lru_cache(maxsize=65536)
def _frame_info(text: str) -> FrameInfo:
    """Parsed pixel descriptions, shared: the instances of a series mostly store identical JSON, and
    parsing it again for every row cost about 6 ms when a 500-slice series was listed. FrameInfo is
    frozen, so sharing one object is safe. Only short descriptions are cached (LUTs and per-frame
    groups make long, unique ones), which bounds the cache to a few hundred kilobytes."""
    return FrameInfo.from_json(text)


def _scope_where(study: str, series: str | None, sop: str | None) -> tuple[str, tuple[Any, ...]]:
    clauses, params = ["st.study_uid=?"], [study]
    if series is not None:
        clauses.append("s.series_uid=?")
        params.append(series)
    if sop is not None:
        clauses.append("i.sop_uid=?")
        params.append(sop)
    return " AND ".join(clauses), tuple(params)


def _scope_text(study: str, series: str | None, sop: str | None) -> str:
    if sop is not None:
        return f"instance {sop} of series {series} of study {study}"
    if series is not None:
        return f"series {series} of study {study}"
    return f"study {study}"


def _upsert(
    conn: sqlite3.Connection, table: str, keys: tuple[str, ...], values: tuple[Any, ...], fields: dict[str, Any]
) -> int:
    """Return the pk of the row with these key values, inserting it (with ``fields``) when absent.

    An existing row keeps its attributes: the first instance of a study or series defines them,
    as in Orthanc and dcm4chee's default.
    """
    where = " AND ".join(f"{k}=?" for k in keys)
    row = conn.execute(f"SELECT pk FROM {table} WHERE {where}", values).fetchone()
    if row is not None:
        return int(row[0])
    columns = list(keys) + list(fields)
    placeholders = ",".join("?" * len(columns))
    cur = conn.execute(
        f"INSERT INTO {table} ({','.join(columns)}) VALUES ({placeholders})", (*values, *fields.values())
    )
    return int(cur.lastrowid or 0)


def _bump_generation(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('generation', '1') "
        "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )


def _refresh_study_counts(conn: sqlite3.Connection, study_pk: int) -> None:
    conn.execute(
        "UPDATE studies SET num_series=(SELECT COUNT(*) FROM series WHERE study_pk=?), "
        "num_instances=(SELECT COUNT(*) FROM instances WHERE study_pk=?), "
        "modalities=COALESCE((SELECT GROUP_CONCAT(m, '\\') FROM (SELECT DISTINCT modality AS m FROM series "
        "WHERE study_pk=? AND modality IS NOT NULL AND modality<>'' ORDER BY modality)), '') WHERE pk=?",
        (study_pk, study_pk, study_pk, study_pk),
    )
