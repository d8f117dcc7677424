"""QIDO-RS queries: parameters to a validated ``Query``, a ``Query`` to SQL, rows to DICOM JSON.

Implements the matching rules of PS3.4 C.2.2.2 as PS3.18 10.6 uses them: single value, UID list,
wildcards ``*`` and ``?``, DA/TM/DT ranges with open ends, case-insensitive PN (and fuzzy matching of
name components), universal matching by an empty value; ``includefield``, ``limit``, ``offset``.
An unknown or malformed parameter raises InvalidQuery naming it: a filter is never silently ignored.
Must not know HTTP or open the database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from archive.errors import InvalidQuery
from archive.parse import UID_RE

LEVELS = ("study", "series", "instance")
MAX_LIMIT = 10000
DEFAULT_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Attr:
    keyword: str
    tag: str  # 8 hex digits, upper case
    vr: str
    level: str
    column: str | None  # SQL expression; None: returned but not matchable (computed)
    matchable: bool = True


def _a(keyword: str, vr: str, level: str, column: str | None, matchable: bool = True) -> Attr:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return Attr(keyword, f"{tag:08X}", vr, level, column, matchable)


ATTRIBUTES: tuple[Attr, ...] = (
    _a("SpecificCharacterSet", "CS", "study", "st.charset", False),
    _a("StudyDate", "DA", "study", "st.study_date"),
    _a("StudyTime", "TM", "study", "st.study_time"),
    _a("AccessionNumber", "SH", "study", "st.accession_number"),
    _a("InstanceAvailability", "CS", "study", "'ONLINE'", False),
    _a("ModalitiesInStudy", "CS", "study", "st.modalities"),
    _a("ReferringPhysicianName", "PN", "study", "st.referring_physician_name"),
    _a("TimezoneOffsetFromUTC", "SH", "study", "st.timezone_offset", False),
    _a("InstitutionName", "LO", "study", "st.institution_name"),
    _a("StudyDescription", "LO", "study", "st.study_description"),
    _a("PatientName", "PN", "study", "st.patient_name"),
    _a("PatientID", "LO", "study", "st.patient_id"),
    _a("PatientBirthDate", "DA", "study", "st.patient_birth_date"),
    _a("PatientSex", "CS", "study", "st.patient_sex"),
    _a("StudyInstanceUID", "UI", "study", "st.study_uid"),
    _a("StudyID", "SH", "study", "st.study_id"),
    _a("NumberOfStudyRelatedSeries", "IS", "study", "st.num_series", False),
    _a("NumberOfStudyRelatedInstances", "IS", "study", "st.num_instances", False),
    _a("Modality", "CS", "series", "s.modality"),
    _a("SeriesDescription", "LO", "series", "s.series_description"),
    _a("SeriesNumber", "IS", "series", "s.series_number"),
    _a("SeriesInstanceUID", "UI", "series", "s.series_uid"),
    _a("BodyPartExamined", "CS", "series", "s.body_part_examined"),
    _a("SeriesDate", "DA", "series", "s.series_date"),
    _a("SeriesTime", "TM", "series", "s.series_time"),
    _a("PerformedProcedureStepStartDate", "DA", "series", "s.pps_start_date"),
    _a("PerformedProcedureStepStartTime", "TM", "series", "s.pps_start_time"),
    _a("NumberOfSeriesRelatedInstances", "IS", "series", "s.num_instances", False),
    _a("SOPClassUID", "UI", "instance", "i.sop_class_uid"),
    _a("SOPInstanceUID", "UI", "instance", "i.sop_uid"),
    _a("InstanceNumber", "IS", "instance", "i.instance_number"),
    _a("ContentDate", "DA", "instance", "i.content_date"),
    _a("ContentTime", "TM", "instance", "i.content_time"),
    _a("Rows", "US", "instance", "i.rows"),
    _a("Columns", "US", "instance", "i.columns"),
    _a("BitsAllocated", "US", "instance", "i.bits_allocated"),
    _a("NumberOfFrames", "IS", "instance", "i.number_of_frames"),
    _a("AvailableTransferSyntaxUID", "UI", "instance", "i.transfer_syntax_uid", False),
)
BY_KEYWORD = {a.keyword: a for a in ATTRIBUTES}
BY_TAG = {a.tag: a for a in ATTRIBUTES}
RETRIEVE_URL_TAG = "00081190"

# Attributes each level returns by default (PS3.18 Tables 10.6.3-3 to -5).
_DEFAULTS = {
    "study": [
        "SpecificCharacterSet", "StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability",
        "ModalitiesInStudy", "ReferringPhysicianName", "TimezoneOffsetFromUTC", "PatientName", "PatientID",
        "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID", "StudyDescription",
        "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
    ],
    "series": [
        "SpecificCharacterSet", "Modality", "TimezoneOffsetFromUTC", "SeriesDescription", "SeriesInstanceUID",
        "SeriesNumber", "NumberOfSeriesRelatedInstances", "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime", "BodyPartExamined",
    ],
    "instance": [
        "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "InstanceAvailability", "TimezoneOffsetFromUTC",
        "InstanceNumber", "Rows", "Columns", "BitsAllocated", "NumberOfFrames", "AvailableTransferSyntaxUID",
    ],
}
_LEVEL_RANK = {"study": 0, "series": 1, "instance": 2}
_FROM = {
    "study": "FROM studies st",
    "series": "FROM series s JOIN studies st ON st.pk=s.study_pk",
    "instance": "FROM instances i JOIN series s ON s.pk=i.series_pk JOIN studies st ON st.pk=i.study_pk",
}
_ORDER = {
    "study": " ORDER BY st.study_date DESC, st.study_time DESC, st.pk DESC",
    "series": " ORDER BY st.pk, s.series_number, s.pk",
    "instance": " ORDER BY st.pk, s.series_number, s.pk, i.instance_number, i.pk",
}
_DA_RE = re.compile(r"^\d{8}$")
_TM_RE = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")


@dataclass(frozen=True, slots=True)
class Filter:
    attr: Attr
    kind: str  # "uids", "values", "wildcard", "range", "number"
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Query:
    """A validated QIDO query at one level, scoped by the UIDs in the path."""

    level: str
    scope_study: str | None = None
    scope_series: str | None = None
    filters: tuple[Filter, ...] = ()
    fields: tuple[Attr, ...] = ()  # indexed attributes to return
    extra_tags: tuple[str, ...] = ()  # other attributes asked for by includefield, from metadata
    include_all: bool = False
    fuzzy: bool = False
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    #: The studies the caller may see (a referrer's grants, a share link's study); None = all. Applied
    #: in the SQL, so nothing outside it is ever matched, counted or listed.
    allowed_studies: frozenset[str] | None = None


def resolve_attribute(name: str) -> tuple[str, str | None]:
    """(tag hex, keyword) for a keyword or tag in a query; raises InvalidQuery when neither."""
    text = name.strip()
    if re.fullmatch(r"[0-9A-Fa-f]{8}", text):
        tag = text.upper()
        return tag, keyword_for_tag(int(tag, 16)) or None
    tag_int = tag_for_keyword(text)
    if tag_int is None:
        raise InvalidQuery(f"query parameter {name!r} is not a DICOM keyword or tag, nor a QIDO-RS parameter")
    return f"{tag_int:08X}", text


def parse_query(
    level: str,
    params: Iterable[tuple[str, str]],
    *,
    study: str | None = None,
    series: str | None = None,
    max_limit: int = MAX_LIMIT,
) -> Query:
    """Validate QIDO-RS query parameters (PS3.18 8.3.4) for a resource at ``level``.

    ``study``/``series`` are the UIDs of the path. Raises InvalidQuery naming the parameter, its value
    and what is allowed.
    """
    visible = [lv for lv in LEVELS if _LEVEL_RANK[lv] <= _LEVEL_RANK[level]]
    if study is not None:
        visible = [lv for lv in visible if lv != "study"] if level != "study" else visible
    if series is not None:
        visible = [lv for lv in visible if lv != "series"]
    matchable_levels = [lv for lv in LEVELS if _LEVEL_RANK[lv] <= _LEVEL_RANK[level]]
    filters: dict[str, list[Filter]] = {}
    includes: list[str] = []
    limit, offset, fuzzy = DEFAULT_LIMIT, 0, False
    for raw_key, raw_value in params:
        key = raw_key.strip()
        if key == "limit":
            limit = _int_param("limit", raw_value, 1, max_limit)
        elif key == "offset":
            offset = _int_param("offset", raw_value, 0, 2**31)
        elif key == "fuzzymatching":
            if raw_value.lower() not in ("true", "false"):
                raise InvalidQuery(f"fuzzymatching: value {raw_value!r} is invalid: must be true or false")
            fuzzy = raw_value.lower() == "true"
        elif key == "includefield":
            includes.extend(v.strip() for v in raw_value.split(",") if v.strip())
        elif key in ("orderby", "offset ", "count"):
            raise InvalidQuery(f"query parameter {key!r} is not supported")
        else:
            if "." in key:
                raise InvalidQuery(f"query parameter {key!r}: matching on sequence attributes is not supported")
            tag, _keyword = resolve_attribute(key)
            attr = BY_TAG.get(tag)
            if attr is None or not attr.matchable:
                raise InvalidQuery(
                    f"query parameter {key!r} ({tag[:4]},{tag[4:]}) is not a supported matching key; "
                    f"supported: {', '.join(a.keyword for a in ATTRIBUTES if a.matchable)}"
                )
            if attr.level not in matchable_levels:
                raise InvalidQuery(f"query parameter {key!r} is not a matching key for {level}-level queries")
            flt = _parse_filter(attr, raw_value, key)
            if flt is not None:
                filters.setdefault(attr.tag, []).append(flt)
            if attr.level not in visible:
                visible.append(attr.level)
    fields, extra_tags, include_all = _fields(visible, includes, list(filters))
    flat: list[Filter] = []
    for group in filters.values():
        flat.extend(group if len(group) == 1 else [_merge(group)])
    return Query(
        level=level,
        scope_study=study,
        scope_series=series,
        filters=tuple(flat),
        fields=tuple(fields),
        extra_tags=tuple(extra_tags),
        include_all=include_all,
        fuzzy=fuzzy,
        limit=limit,
        offset=offset,
    )


def _merge(group: list[Filter]) -> Filter:
    """Repeated parameters for one attribute: any of them may match (PS3.18 8.3.4.1)."""
    return Filter(group[0].attr, "any", tuple(group))


def _int_param(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidQuery(f"{name}: value {value!r} is invalid: must be an integer") from None
    if not low <= number <= high:
        raise InvalidQuery(f"{name}: value {number} is invalid: must be between {low} and {high}")
    return number


def _parse_filter(attr: Attr, raw: str, key: str) -> Filter | None:
    value = raw.strip()
    if value in ("", "*"):
        return None  # universal matching: the attribute is returned, nothing is filtered
    if attr.vr == "UI":
        uids = tuple(u.strip() for u in re.split(r"[,\\]", value) if u.strip())
        for uid in uids:
            if len(uid) > 64 or not UID_RE.match(uid):
                raise InvalidQuery(f"{key}: value {uid!r} is not a valid UID (digits and dots, at most 64 characters)")
        return Filter(attr, "uids", uids)
    if attr.vr in ("DA", "TM", "DT"):
        return _range_filter(attr, value, key)
    if attr.vr in ("IS", "US"):
        numbers = []
        for part in re.split(r"[,\\]", value):
            low, high = (0, 65535) if attr.vr == "US" else (-(2**31), 2**31 - 1)  # PS3.5 6.2 ranges
            try:
                number = int(part) if len(part.strip()) <= 12 else None
            except ValueError:
                number = None
            if number is None or not low <= number <= high:
                raise InvalidQuery(
                    f"{key}: value {part[:40]!r} is invalid: must be an integer from {low} to {high} ({attr.vr})"
                )
            numbers.append(number)
        return Filter(attr, "values", tuple(numbers))
    if "*" in value or "?" in value:
        return Filter(attr, "wildcard", (value,))
    if attr.vr == "CS":
        return Filter(attr, "values", tuple(v for v in re.split(r"[,\\]", value) if v))
    return Filter(attr, "values", (value,))


def _range_filter(attr: Attr, value: str, key: str) -> Filter:
    check = _DA_RE if attr.vr == "DA" else _TM_RE
    what = "YYYYMMDD" if attr.vr == "DA" else "HHMMSS.FFFFFF (leading components)"
    if "*" in value or "?" in value:
        raise InvalidQuery(f"{key}: value {value!r} is invalid: wildcards are not allowed for {attr.vr}")
    low, sep, high = value.partition("-")
    bounds = []
    for bound in (low, high) if sep else (low,):
        bound = bound.strip().replace(":", "") if attr.vr == "TM" else bound.strip()
        if bound and not check.match(bound):
            raise InvalidQuery(f"{key}: value {value!r} is invalid: must be {what} or a range of them with '-'")
        bounds.append(bound)
    if not sep:
        return Filter(attr, "range", (bounds[0], bounds[0]))
    if not bounds[0] and not bounds[1]:
        raise InvalidQuery(f"{key}: value {value!r} is invalid: a range needs at least one end")
    return Filter(attr, "range", (bounds[0], bounds[1]))


def _fields(
    visible: list[str], includes: list[str], filtered_tags: list[str]
) -> tuple[list[Attr], list[str], bool]:
    chosen: dict[str, Attr] = {}
    for lv in LEVELS:
        if lv in visible:
            for kw in _DEFAULTS[lv]:
                chosen[BY_KEYWORD[kw].tag] = BY_KEYWORD[kw]
    for tag in filtered_tags:
        chosen[tag] = BY_TAG[tag]
    extra: list[str] = []
    include_all = False
    for name in includes:
        if name == "all":
            include_all = True
            for a in ATTRIBUTES:
                if a.level in visible:
                    chosen[a.tag] = a
            continue
        tag, _kw = resolve_attribute(name)
        if tag in BY_TAG:
            chosen[tag] = BY_TAG[tag]
        elif tag not in extra:
            extra.append(tag)
    return list(chosen.values()), extra, include_all


# --- SQL -------------------------------------------------------------------------------------------


def build_sql(q: Query) -> tuple[str, list[Any]]:
    """SELECT statement returning one row per match: the chosen attributes (by tag) plus ``_study``,
    ``_series``, ``_sop`` for RetrieveURL and ``_meta_pk`` (an instance whose metadata answers
    includefield of non-indexed attributes)."""
    cols = [f"{a.column} AS a{a.tag}" for a in q.fields if a.column]
    ids = {
        "study": ["st.study_uid AS _study", "(SELECT MIN(pk) FROM instances WHERE study_pk=st.pk) AS _meta_pk"],
        "series": [
            "st.study_uid AS _study",
            "s.series_uid AS _series",
            "(SELECT MIN(pk) FROM instances WHERE series_pk=s.pk) AS _meta_pk",
        ],
        "instance": ["st.study_uid AS _study", "s.series_uid AS _series", "i.sop_uid AS _sop", "i.pk AS _meta_pk"],
    }[q.level]
    where: list[str] = []
    params: list[Any] = []
    if q.allowed_studies is not None:
        allowed = sorted(q.allowed_studies)
        where.append(f"st.study_uid IN ({', '.join('?' * len(allowed))})" if allowed else "0")
        params.extend(allowed)
    if q.scope_study is not None:
        where.append("st.study_uid=?")
        params.append(q.scope_study)
    if q.scope_series is not None:
        where.append("s.series_uid=?")
        params.append(q.scope_series)
    for flt in q.filters:
        clause, values = _clause(flt, q.fuzzy)
        where.append(clause)
        params.extend(values)
    sql = f"SELECT {', '.join(cols + ids)} {_FROM[q.level]}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += _ORDER[q.level] + " LIMIT ? OFFSET ?"
    params.extend([q.limit, q.offset])
    return sql, params


def _clause(flt: Filter, fuzzy: bool) -> tuple[str, list[Any]]:
    a = flt.attr
    col = a.column or "NULL"
    if flt.kind == "any":
        parts = [_clause(sub, fuzzy) for sub in flt.values]
        return "(" + " OR ".join(p[0] for p in parts) + ")", [v for p in parts for v in p[1]]
    if a.keyword == "ModalitiesInStudy":
        # The study matches when any of its modalities is one of the values (PS3.4 C.6.1.1.3).
        if flt.kind == "wildcard":
            return (
                "EXISTS (SELECT 1 FROM series ms WHERE ms.study_pk=st.pk AND ms.modality GLOB ?)",
                [_glob(flt.values[0])],
            )
        marks = ",".join("?" * len(flt.values))
        return f"EXISTS (SELECT 1 FROM series ms WHERE ms.study_pk=st.pk AND ms.modality IN ({marks}))", list(
            flt.values
        )
    if a.vr == "PN":
        upper_col = col + "_uc" if col.endswith("_name") else f"UPPER({col})"
        value = flt.values[0].upper()
        if fuzzy and flt.kind == "values":
            # Fuzzy: the value starts any component of the name (family, given, middle...).
            return (
                f"({upper_col} GLOB ? OR {upper_col} GLOB ? OR {upper_col} GLOB ?)",
                [_glob(value) + "*", "*^" + _glob(value) + "*", "* " + _glob(value) + "*"],
            )
        if flt.kind == "wildcard":
            return f"{upper_col} GLOB ?", [_glob(value)]
        return f"{upper_col}=?", [value]
    if flt.kind in ("uids", "values"):
        marks = ",".join("?" * len(flt.values))
        return f"{col} IN ({marks})", list(flt.values)
    if flt.kind == "wildcard":
        return f"{col} GLOB ?", [_glob(flt.values[0])]
    if flt.kind == "range":
        low, high = flt.values
        expr = f"tm_norm({col})" if a.vr == "TM" else col
        if a.vr == "TM":
            low, high = _tm_low(low), _tm_high(high)
        clauses, values = [], []
        if low:
            clauses.append(f"{expr} >= ?")
            values.append(low)
        if high:
            clauses.append(f"{expr} <= ?")
            values.append(high)
        clauses.append(f"{col} IS NOT NULL AND {col} <> ''")
        return "(" + " AND ".join(clauses) + ")", values
    raise InvalidQuery(f"unsupported filter on {a.keyword}")


def _glob(value: str) -> str:
    """DICOM wildcard to SQLite GLOB: only * and ? are special; '[' must be escaped."""
    return value.replace("[", "[[]")


def normalize_time(value: str | None) -> str:
    """TM to a fixed-width sortable form HHMMSS.FFFFFF (PS3.5 6.2; legacy colons tolerated)."""
    text = (value or "").strip().replace(":", "")
    if not text:
        return ""
    whole, _, frac = text.partition(".")
    return whole.ljust(6, "0")[:6] + "." + frac.ljust(6, "0")[:6]


def _tm_low(bound: str) -> str:
    return normalize_time(bound) if bound else ""


def _tm_high(bound: str) -> str:
    # An upper bound "10" means up to the end of hour 10: pad the missing components with nines.
    if not bound:
        return ""
    whole, _, frac = bound.partition(".")
    padded = whole + "995959"[len(whole) :] if len(whole) < 6 else whole[:6]
    return padded + "." + (frac.ljust(6, "9") if frac or len(whole) < 6 else "999999")


# --- DICOM JSON ----------------------------------------------------------------------------------


def row_to_json(q: Query, row: dict[str, Any], base_url: str) -> dict[str, Any]:
    """One QIDO result as a DICOM JSON object (PS3.18 Annex F), with RetrieveURL."""
    out: dict[str, Any] = {}
    for a in q.fields:
        out[a.tag] = _json_value(a.vr, row.get("a" + a.tag))
    url = f"{base_url}/studies/{row['_study']}"
    if q.level in ("series", "instance"):
        url += f"/series/{row['_series']}"
    if q.level == "instance":
        url += f"/instances/{row['_sop']}"
    out[RETRIEVE_URL_TAG] = {"vr": "UR", "Value": [url]}
    return out


def _json_value(vr: str, value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": v} for v in str(value).split("\\")]}
    if vr in ("IS", "US"):
        return {"vr": vr, "Value": [int(value)]}
    if vr == "CS" and isinstance(value, str) and "\\" in value:
        return {"vr": vr, "Value": value.split("\\")}
    return {"vr": vr, "Value": [value]}


def vr_of(tag: str) -> str:
    try:
        return str(dictionary_VR(int(tag, 16)))
    except KeyError:
        return "UN"
