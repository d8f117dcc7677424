"""Instance records remembered in one process, valid until the index changes.

A rendered frame needs its instance's record (pixel description, frame table, blob key) before
anything else; looking it up costs a trip to the I/O pool, more than the SQLite query itself. This
cache answers repeated lookups in the event loop's thread. It is valid exactly as long as nobody
committed to the index: SQLite's ``PRAGMA data_version`` on the cache's own connection (from the
WAL index in shared memory and the mapped first page) changes with every commit by any other
connection of any process, and a change empties the cache. A miss is looked up as before; the
first miss in a series loads the whole series in one query behind it, since a viewer asks for every slice of the series it opened
(not while the index keeps changing, as during an ingest, when such loads would be thrown away).

Must be used from one thread (the event loop's), whose index connection must never write: a
connection does not see its own commits in ``data_version``. It does no I/O of its own but the
version check.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from archive.index import InstanceRecord

Key = tuple[str, str, str]
#: After a series load was thrown away (a commit landed while it ran), none for this long.
SERIES_BACKOFF_S = 1.0


class RecordCache:
    """Records by (study, series, SOP Instance UID), dropped whenever the index's version moves."""

    def __init__(self, version: Callable[[], int], max_frames: int = 200_000) -> None:
        self._version = version
        # Bounded by frames, not records: a record's frame table grows with its frames (a cine
        # loop of hundreds), and a CT slice of one frame costs about 1 kB.
        self._max = max_frames
        self._frames = 0
        self._stamp: int | None = None
        self._records: dict[Key, InstanceRecord] = {}
        self._discarded_at = float("-inf")
        self._series_loaded: set[tuple[str, str]] = set()
        self._series_pending: set[tuple[str, str]] = set()

    def version(self) -> int:
        """The index version now; pass it to ``fill`` with records read after this call."""
        return self._version()

    def get(self, study: str, series: str, sop: str) -> InstanceRecord | None:
        now = self._version()
        if now != self._stamp:
            self._clear(now)
        return self._records.get((study, series, sop))

    def claim_series(self, study: str, series: str) -> bool:
        """True when the whole series is worth loading (not loaded since the last change, nobody
        loading it): the caller then loads it and calls ``release_series`` when done, filled or not."""
        key = (study, series)
        if key in self._series_loaded or key in self._series_pending:
            return False
        if time.monotonic() - self._discarded_at < SERIES_BACKOFF_S:
            return False  # the index keeps changing (an ingest): a series load would be thrown away
        self._series_pending.add(key)
        return True

    def release_series(self, study: str, series: str) -> None:
        self._series_pending.discard((study, series))

    def fill(self, version: int, records: Iterable[InstanceRecord], *, series: tuple[str, str] | None = None) -> None:
        """Remember ``records``, read after ``version()`` returned ``version``. Ignored when the index
        changed since (they may predate the change), so nothing stale is ever kept."""
        now = self._version()
        if now != version:
            if series is not None:
                self._discarded_at = time.monotonic()
            return
        if now != self._stamp:
            self._clear(now)
        batch = list(records)
        frames = sum(max(1, r.number_of_frames) for r in batch)
        if frames > self._max:
            return  # larger than the whole cache: looked up each time instead
        if self._frames + frames > self._max:
            self._clear(now)
        for r in batch:
            key = (r.study_uid, r.series_uid, r.sop_uid)
            old = self._records.get(key)
            if old is not None:
                self._frames -= max(1, old.number_of_frames)
            self._records[key] = r
            self._frames += max(1, r.number_of_frames)
        if series is not None:
            self._series_loaded.add(series)

    def _clear(self, stamp: int) -> None:
        self._records.clear()
        self._frames = 0
        self._series_loaded.clear()
        self._stamp = stamp
