"""Audit records as written (archive/audit.py): the line built from the fields is the JSON of
``stored()``, whatever the strings hold; times are UTC to the millisecond."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from archive.audit import EVENTS, AuditLog, AuditRecord, _iso

_text = st.text(max_size=40)
_optional = st.none() | _text


@given(
    event=st.sampled_from(sorted(EVENTS)), status=st.integers(100, 599), user=_optional, role=_optional,
    credential=_optional, client=_optional, method=_text, path=_text, studies=st.lists(_text, max_size=3),
    series=st.lists(_text, max_size=3), instances=st.lists(_text, max_size=3), query=_optional,
    detail=_optional, stamp=st.floats(0, 4102444800, allow_nan=False),
)
def test_the_line_is_the_json_of_the_stored_record(
    event: str, status: int, user: str | None, role: str | None, credential: str | None, client: str | None,
    method: str, path: str, studies: list[str], series: list[str], instances: list[str], query: str | None,
    detail: str | None, stamp: float,
) -> None:
    record = AuditRecord(event=event, status=status, user=user, role=role, credential=credential, client=client,
                         method=method, path=path, studies=studies, series=series, instances=instances,
                         query=query, detail=detail, time=stamp)
    line = record.line()
    assert line.endswith("}\n") and "\n" not in line[:-1]
    assert json.loads(line) == record.stored()
    assert list(json.loads(line)) == list(record.stored())  # same key order as ever


@given(st.floats(-2208988800, 4102444800, allow_nan=False)
       | st.builds(lambda s, ms: s + ms / 1000 + 0.0009995, st.integers(0, 4102444799), st.integers(0, 998)))
@example(1855507912.6259995)  # rounding the whole stamp instead of its fraction gave .625
@example(12.9999996)  # the microsecond rounds up into the next second
@example(-0.0000004)
def test_times_are_utc_to_the_millisecond(stamp: float) -> None:
    text = _iso(stamp)
    assert text.endswith("Z") and len(text) == len("2026-11-28T21:51:43.296Z")
    assert text == datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_records_land_in_the_file_of_their_utc_day(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    stamps = [datetime(2026, 11, 28, 23, 59, 59, 999000, tzinfo=UTC).timestamp(),
              datetime(2026, 11, 29, 0, 0, 0, 1000, tzinfo=UTC).timestamp()]
    for stamp in stamps:
        log.append(AuditRecord(event="render", status=200, user="u", role="viewer", credential=None,
                               client="127.0.0.1", method="GET", path="/x", time=stamp))
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit-2026-11-28.jsonl", "audit-2026-11-29.jsonl"]
    assert [r["time"] for r in AuditLog(tmp_path).read()] == ["2026-11-28T23:59:59.999Z", "2026-11-29T00:00:00.001Z"]
