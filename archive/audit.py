"""The audit trail: one JSON line per access to patient data, appended under ``<data>/audit/``.

Each record says who (name, role, credential), when (UTC), what (event, study/series/instance UIDs,
query), from where (client address) and the outcome, plus the DICOM PS3.15 Annex A.5 coding of the
event (EventID, EventActionCode, EventOutcomeIndicator, EventTypeCode), so a record maps onto an audit
message field by field.

Append-only by construction: records go to one file per UTC day opened with O_APPEND, one ``write``
per record (so records from several worker processes never interleave), mode 0600; nothing in the
code base rewrites or deletes them and no route writes here except by appending. Must not know HTTP.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring as _string
from pathlib import Path
from typing import Any

#: event -> (EventID code, meaning, EventActionCode, EventTypeCode or None); codes from PS3.16 DCM.
EVENTS: dict[str, tuple[str, str, str, tuple[str, str] | None]] = {
    "search": ("110112", "Query", "E", None),
    "retrieve": ("110104", "DICOM Instances Transferred", "R", None),
    "render": ("110103", "DICOM Instances Accessed", "R", None),
    "store": ("110104", "DICOM Instances Transferred", "C", None),
    "delete": ("110103", "DICOM Instances Accessed", "D", None),
    "share": ("110113", "Security Alert", "E", ("110135", "Object Security Attributes Changed")),
    "token": ("110113", "Security Alert", "E", ("110137", "User Security Attributes Changed")),
    "signin": ("110114", "User Authentication", "E", ("110122", "Login")),
    "signout": ("110114", "User Authentication", "E", ("110123", "Logout")),
    "audit": ("110101", "Audit Log Used", "R", None),
    "describe": ("110100", "Application Activity", "R", None),
    "monitor": ("110100", "Application Activity", "R", None),
}


def outcome_indicator(status: int) -> int:
    """PS3.15 EventOutcomeIndicator: 0 success, 4 minor failure (refused request), 8 serious failure."""
    if status < 400:
        return 0
    return 4 if status < 500 else 8


@dataclass(slots=True)
class AuditRecord:
    event: str
    status: int
    user: str | None
    role: str | None
    credential: str | None
    client: str | None
    method: str = ""
    path: str = ""
    studies: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)
    query: str | None = None
    detail: str | None = None
    time: float = field(default_factory=time.time)

    def stored(self) -> dict[str, Any]:
        """The record as it is written: flat, only what happened (the DICOM coding follows from it)."""
        out = {
            "time": _iso(self.time), "event": self.event, "status": self.status, "user": self.user,
            "role": self.role, "credential": self.credential, "client": self.client, "method": self.method,
            "path": self.path, "studies": self.studies, "series": self.series, "instances": self.instances,
        }
        if self.query is not None:
            out["query"] = self.query
        if self.detail is not None:
            out["detail"] = self.detail
        return out

    def line(self) -> str:
        """``stored()`` as one compact JSON line, written straight from the fields.

        Every request appends one on the event loop's thread: building the dict and running the JSON
        encoder over it (and formatting the file's day) cost 6-6.6 microseconds, this line and the
        day cut from its time 3.6-3.7; its strings still go through the json module's own escaping.
        Tests hold it equal to ``json.loads`` of ``stored()``.
        """
        text = (
            f'{{"time":"{_iso(self.time)}","event":{_string(self.event)},"status":{int(self.status)},'
            f'"user":{_optional(self.user)},"role":{_optional(self.role)},'
            f'"credential":{_optional(self.credential)},"client":{_optional(self.client)},'
            f'"method":{_string(self.method)},"path":{_string(self.path)},"studies":{_strings(self.studies)},'
            f'"series":{_strings(self.series)},"instances":{_strings(self.instances)}'
        )
        if self.query is not None:
            text += f',"query":{_string(self.query)}'
        if self.detail is not None:
            text += f',"detail":{_string(self.detail)}'
        return text + "}\n"


def _optional(value: str | None) -> str:
    return "null" if value is None else _string(value)


def _strings(values: list[str]) -> str:
    return "[" + ",".join(map(_string, values)) + "]"


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: Where the line's first field, its time, starts: the record's UTC date is the 10 characters there.
_TIME_AT = len('{"time":"')


def with_dicom_coding(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored record plus ``outcome`` and its PS3.15 A.5 coding: EventID, EventActionCode,
    EventOutcomeIndicator, EventTypeCode, the requesting participant and the studies as participant
    objects. Computed when exported, so the request path writes only the facts."""
    event_id, meaning, action, type_code = EVENTS[stored["event"]]
    status = stored["status"]
    return {
        **stored,
        "outcome": "success" if status < 400 else "failure",
        "dicom": {
            "EventID": {"code": event_id, "scheme": "DCM", "meaning": meaning},
            "EventActionCode": action,
            "EventOutcomeIndicator": outcome_indicator(status),
            "EventTypeCode": {"code": type_code[0], "scheme": "DCM", "meaning": type_code[1]} if type_code else None,
            "ActiveParticipant": {"UserID": stored["user"], "NetworkAccessPointID": stored["client"],
                                  "UserIsRequestor": True},
            "ParticipantObjects": [{"type": "StudyInstanceUID", "id": uid} for uid in stored["studies"]],
        },
    }


class AuditLog:
    """Appends records to ``<dir>/audit-YYYY-MM-DD.jsonl``; reads them back by time range."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._day = ""
        self._fd = -1

    def append(self, record: AuditRecord) -> None:
        line = record.line()
        day = line[_TIME_AT:_TIME_AT + 10]
        if day != self._day:
            self._reopen(day)
        os.write(self._fd, line.encode())  # one write with O_APPEND: atomic position, never interleaved

    def _reopen(self, day: str) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        path = self.folder / f"audit-{day}.jsonl"
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._day = day

    def read(self, since: datetime | None = None, until: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Records with ``since <= time < until`` (UTC), oldest first."""
        low = since.timestamp() if since else float("-inf")
        high = until.timestamp() if until else float("inf")
        for path in sorted(self.folder.glob("audit-*.jsonl")):
            day = datetime.strptime(path.stem[len("audit-"):], "%Y-%m-%d").replace(tzinfo=UTC)
            if day.timestamp() + 86400 <= low or day.timestamp() >= high:
                continue
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    if not line.endswith("\n"):
                        continue  # a record still being written by another process
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue  # a torn line (a crash mid-write) is skipped, not fatal to the export
                    stamp = datetime.fromisoformat(record["time"]).timestamp()
                    if low <= stamp < high:
                        yield with_dicom_coding(record)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int | None:
    """Seconds in ``90s``, ``45m``, ``12h`` or ``30d``; None when ``text`` is not shaped like that."""
    text = text.strip()
    if text[-1:] in _UNITS and text[:-1].isdigit():
        return int(text[:-1]) * _UNITS[text[-1]]
    return None


def parse_when(text: str) -> datetime:
    """An ISO date or date-time (UTC when no offset), or a time ago: ``2h``, ``7d`` (or ``-2h``).

    Raises ValueError."""
    text = text.strip()
    seconds = duration_seconds(text.removeprefix("-"))
    if seconds is not None:
        if seconds > 100 * 366 * 86400:
            raise ValueError(f"{text!r} is more than a hundred years ago")
        return datetime.now(UTC) - timedelta(seconds=seconds)
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
