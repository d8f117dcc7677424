"""Parse one received DICOM file into what the archive stores about it.

Validates the identifying UIDs and the pixel module, detects the transfer syntax when the file meta
lacks it, computes the per-frame byte table (PS3.5 A.4: basic or extended offset table, else a fragment
scan) and the DICOM JSON metadata (PS3.18 Annex F) with BulkDataURIs. Must not write anything: the
caller decides whether and where the bytes are stored.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from io import BytesIO
from typing import Any, cast

from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from archive.dicomjson import dataset_json
from archive.errors import InstanceTooLarge, InvalidInstance, UnsupportedSyntax
from render.errors import InvalidPixelModule
from render.frameinfo import FrameInfo

# Stored in the metadata JSON in place of the DICOMweb base URL, replaced per request (the same archive
# answers under any host name). Only ever replaced right after '"BulkDataURI":"', so it cannot clash
# with text inside a value.
BASE_PLACEHOLDER = "{+base}"
BULK_URI_PREFIX = '"BulkDataURI":"' + BASE_PLACEHOLDER

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
NATIVE_SYNTAXES = frozenset({IMPLICIT_LE, EXPLICIT_LE, DEFLATED_LE, EXPLICIT_BE})
ENCAPSULATED_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.5",  # RLE Lossless
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.4.203",
        # Stored and served as received, never rendered: video and other encapsulated syntaxes.
        "1.2.840.10008.1.2.4.100",
        "1.2.840.10008.1.2.4.101",
        "1.2.840.10008.1.2.4.102",
        "1.2.840.10008.1.2.4.103",
        "1.2.840.10008.1.2.4.104",
        "1.2.840.10008.1.2.4.105",
        "1.2.840.10008.1.2.4.106",
        "1.2.840.10008.1.2.4.107",
        "1.2.840.10008.1.2.4.108",
    }
)

# Digits and dots (PS3.5 9.1). Components with a leading zero are tolerated: real scanners write them
# and refusing their studies helps nobody.
UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_ITEM_TAG = 0xE000FFFE  # (FFFE,E000) read as little-endian uint32 of group, element
_SEQ_DELIM = 0xE0DDFFFE


@dataclass(frozen=True, slots=True)
class Fragment:
    offset: int  # absolute file offset of the fragment's value (after the 8-byte item header)
    length: int


@dataclass(frozen=True, slots=True)
class ParsedInstance:
    """What ingest learned from one file: identity, index attributes, pixels and metadata."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    attributes: dict[str, Any]  # keyword -> plain value for the index (see archive/schema.py)
    frame_info: FrameInfo | None
    # One entry per frame: the fragments (absolute offsets) whose values make up that frame. For native
    # pixel data each frame is one "fragment" spanning its bytes. None when offsets cannot be known
    # (deflated) and the frame must be extracted by parsing the file.
    frames: tuple[tuple[Fragment, ...], ...] | None
    metadata_json: str  # DICOM JSON object with BASE_PLACEHOLDER in BulkDataURIs


def check_uid(value: Any, keyword: str, tag: str) -> str:
    """Return a well-formed UID (PS3.5 9.1) or raise InvalidInstance naming the attribute."""
    text = str(value or "").strip().rstrip("\x00")
    if not text:
        raise InvalidInstance(f"{tag} '{keyword}' is missing")
    if len(text) > 64 or not UID_RE.match(text):
        raise InvalidInstance(
            f"{tag} '{keyword}' value {text[:80]!r} is invalid: must be digits and dots, at most 64 characters"
        )
    return text


def parse_instance(data: bytes, *, max_pixel_bytes: int) -> ParsedInstance:
    """Parse and validate one DICOM file held in memory.

    Raises InvalidInstance (not DICOM, missing or malformed UIDs, inconsistent pixel module),
    InstanceTooLarge (declared pixel data above ``max_pixel_bytes``) or UnsupportedSyntax.
    """
    try:
        ds = dcmread(BytesIO(data), force=True)
        ds.get_item(0x00080016)  # force the header read of the first elements
        sop_class = _uid_of(ds, 0x00080016, "SOPClassUID", "(0008,0016)")
        sop_uid = _uid_of(ds, 0x00080018, "SOPInstanceUID", "(0008,0018)")
    except InvalidInstance:
        raise
    except Exception as exc:  # noqa: BLE001 -- pydicom raises many types, BytesLengthException is a bare Exception
        raise InvalidInstance(f"not a readable DICOM file: {exc}") from None
    try:
        study_uid = _uid_of(ds, 0x0020000D, "StudyInstanceUID", "(0020,000D)")
        series_uid = _uid_of(ds, 0x0020000E, "SeriesInstanceUID", "(0020,000E)")
        ts = _transfer_syntax(ds, data)
        raw_pixels = ds.get_item(0x7FE00010)
        frame_info: FrameInfo | None = None
        frames = None
        if raw_pixels is not None:
            frame_info = _frame_info(ds, ts, max_pixel_bytes)
            frames = _frame_table(data, cast(RawDataElement, raw_pixels), frame_info, _extended_offsets(ds))
        meta = _metadata(ds, study_uid, series_uid, sop_uid)
        attributes = _index_attributes(meta)
        metadata = _dumps(meta)
    except InvalidPixelModule as exc:
        raise InvalidInstance(str(exc), sop_class, sop_uid) from None
    except (InvalidInstance, InstanceTooLarge, UnsupportedSyntax) as exc:
        exc.sop_class_uid, exc.sop_instance_uid = sop_class, sop_uid
        raise
    except Exception as exc:  # noqa: BLE001 -- any pydicom failure on a malformed element
        # Whatever pydicom raised on a malformed element: this file is refused, the others beside it
        # in the same request are not affected (PS3.18 10.5.3 FailureReason 0xC000).
        raise InvalidInstance(f"malformed DICOM data: {type(exc).__name__}: {exc}", sop_class, sop_uid) from None
    return ParsedInstance(
        study_uid=study_uid,
        series_uid=series_uid,
        sop_uid=sop_uid,
        sop_class_uid=sop_class,
        transfer_syntax_uid=ts,
        attributes=attributes,
        frame_info=frame_info,
        frames=frames,
        metadata_json=metadata,
    )


def _uid_of(ds: Dataset, tag: int, keyword: str, label: str) -> str:
    elem = ds.get(tag)
    return check_uid(None if elem is None else elem.value, keyword, label)


def _transfer_syntax(ds: Dataset, data: bytes) -> str:
    """The file's transfer syntax; detected from the encoding when the meta lacks it (PS3.10 7.1)."""
    ts = str(ds.file_meta.get("TransferSyntaxUID", "") or "").strip().rstrip("\x00")
    if ts:
        if ts not in NATIVE_SYNTAXES and ts not in ENCAPSULATED_SYNTAXES:
            raise UnsupportedSyntax(f"(0002,0010) 'TransferSyntaxUID' value {ts!r} is not supported")
        return ts
    implicit, little = ds.original_encoding
    raw = ds.get_item(0x7FE00010)
    if raw is not None and getattr(raw, "length", None) == 0xFFFFFFFF:
        raise UnsupportedSyntax("(0002,0010) 'TransferSyntaxUID' is missing and the pixel data is encapsulated")
    if implicit:
        return IMPLICIT_LE
    return EXPLICIT_LE if little else EXPLICIT_BE


def _frame_info(ds: Dataset, ts: str, max_pixel_bytes: int) -> FrameInfo:
    info = FrameInfo.from_dataset(ds, ts)
    declared = info.frame_length * info.number_of_frames
    # Refuse absurd declarations before anything is allocated for them (decompression bombs).
    if declared > max_pixel_bytes:
        raise InstanceTooLarge(
            f"declared pixel data of {info.rows}x{info.columns}x{info.samples_per_pixel} "
            f"{info.bits_allocated}-bit x {info.number_of_frames} frames is {declared} bytes: "
            f"above the limit of {max_pixel_bytes} bytes"
        )
    return info


def _frame_table(
    data: bytes, raw: RawDataElement, info: FrameInfo, extended: list[int] | None
) -> tuple[tuple[Fragment, ...], ...] | None:
    if info.transfer_syntax_uid == DEFLATED_LE:
        return None
    start = raw.value_tell
    if info.transfer_syntax_uid in NATIVE_SYNTAXES:
        if raw.length == 0xFFFFFFFF:
            raise InvalidInstance("(7FE0,0010) 'PixelData' is encapsulated but the transfer syntax is native")
        if info.bits_allocated == 1:
            return None  # frames need not start on a byte boundary: extracted by parsing instead
        length = info.frame_length
        needed = length * info.number_of_frames
        available = min(raw.length, len(data) - start)
        if available < needed:
            raise InvalidInstance(
                f"(7FE0,0010) 'PixelData' has {available} bytes but the pixel module declares {needed} "
                f"({info.number_of_frames} frames of {info.rows}x{info.columns}x{info.samples_per_pixel}, "
                f"{info.bits_allocated} bits allocated)"
            )
        return tuple((Fragment(start + i * length, length),) for i in range(info.number_of_frames))
    if raw.length != 0xFFFFFFFF:
        raise InvalidInstance(
            f"(7FE0,0010) 'PixelData' must be encapsulated (undefined length) for transfer syntax "
            f"{info.transfer_syntax_uid}"
        )
    return _encapsulated_frames(data, start, info.number_of_frames, extended)


def _extended_offsets(ds: Dataset) -> list[int] | None:
    """Offsets of the Extended Offset Table (7FE0,0001), 64-bit, when present (PS3.5 A.4)."""
    elem = ds.get(0x7FE00001)
    if elem is None or not elem.value:
        return None
    value = bytes(elem.value)
    return list(struct.unpack(f"<{len(value) // 8}Q", value[: len(value) // 8 * 8]))


def _encapsulated_frames(
    data: bytes, start: int, n_frames: int, extended: list[int] | None
) -> tuple[tuple[Fragment, ...], ...]:
    """Map fragments to frames (PS3.5 A.4): BOT when present, else one fragment per frame when the
    counts agree, else split where a fragment ends with an end-of-image marker (FFD9 ends JPEG,
    JPEG-LS and JPEG 2000 codestreams)."""
    items: list[Fragment] = []
    pos = start
    end = len(data)
    while True:
        if pos + 8 > end:
            raise InvalidInstance("(7FE0,0010) 'PixelData' is truncated: no sequence delimiter")
        tag, length = struct.unpack_from("<II", data, pos)
        if tag == _SEQ_DELIM:
            break
        if tag != _ITEM_TAG:
            raise InvalidInstance(f"(7FE0,0010) 'PixelData' has an unexpected tag 0x{tag:08X} at byte {pos}")
        if length == 0xFFFFFFFF or pos + 8 + length > end:
            raise InvalidInstance(f"(7FE0,0010) 'PixelData' item at byte {pos} overruns the file")
        items.append(Fragment(pos + 8, length))
        pos += 8 + length
    if not items:
        raise InvalidInstance("(7FE0,0010) 'PixelData' has no Basic Offset Table item")
    bot, fragments = items[0], items[1:]
    if not fragments:
        raise InvalidInstance("(7FE0,0010) 'PixelData' has no fragments")
    if n_frames == 1:
        return (tuple(fragments),)
    offsets = extended
    if not offsets and bot.length:
        offsets = list(struct.unpack_from(f"<{bot.length // 4}I", data, bot.offset))
    if offsets and len(offsets) == n_frames:
        return _split_by_offsets(fragments, offsets, n_frames)
    if len(fragments) == n_frames:
        return tuple((f,) for f in fragments)
    frames: list[tuple[Fragment, ...]] = []
    current: list[Fragment] = []
    for frag in fragments:
        current.append(frag)
        tail = data[frag.offset + max(frag.length - 4, 0) : frag.offset + frag.length]
        if b"\xff\xd9" in tail:
            frames.append(tuple(current))
            current = []
    if current:
        frames.append(tuple(current))
    if len(frames) != n_frames:
        raise InvalidInstance(
            f"(0028,0008) 'NumberOfFrames' is {n_frames} but the pixel data holds {len(frames)} frames"
        )
    return tuple(frames)


def _split_by_offsets(
    fragments: list[Fragment], offsets: list[int], n_frames: int
) -> tuple[tuple[Fragment, ...], ...]:
    # BOT offsets are relative to the first fragment's item tag; each item adds an 8-byte header.
    first_item = fragments[0].offset - 8
    frames: list[list[Fragment]] = [[] for _ in range(n_frames)]
    index = 0
    for frag in fragments:
        rel = frag.offset - 8 - first_item
        while index + 1 < n_frames and rel >= offsets[index + 1]:
            index += 1
        frames[index].append(frag)
    if any(not f for f in frames):
        raise InvalidInstance("(7FE0,0010) 'PixelData' Basic Offset Table does not match its fragments")
    return tuple(tuple(f) for f in frames)


# --- index attributes -------------------------------------------------------------------------------

_STRING_ATTRS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "ReferringPhysicianName",
    "InstitutionName",
    "Modality",
    "SeriesDescription",
    "BodyPartExamined",
    "SeriesDate",
    "SeriesTime",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "ContentDate",
    "ContentTime",
    "SpecificCharacterSet",
    "TimezoneOffsetFromUTC",
)
_INT_ATTRS = ("SeriesNumber", "InstanceNumber", "Rows", "Columns", "BitsAllocated", "NumberOfFrames")


_STRING_TAGS = tuple((kw, f"{tag_for_keyword(kw):08X}") for kw in _STRING_ATTRS)
_INT_TAGS = tuple((kw, f"{tag_for_keyword(kw):08X}") for kw in _INT_ATTRS)


def _index_attributes(meta: dict[str, Any]) -> dict[str, Any]:
    """The attributes the index stores, read from the instance's DICOM JSON (already converted)."""
    out: dict[str, Any] = {}
    for kw, tag in _STRING_TAGS:
        element = meta.get(tag)
        if element is None:
            continue
        values = element.get("Value", [])
        out[kw] = "\\".join(_text(v) for v in values).strip()
    for kw, tag in _INT_TAGS:
        values = (meta.get(tag) or {}).get("Value") or [None]
        try:
            out[kw] = int(values[0]) if values[0] is not None else None
        except (TypeError, ValueError):
            out[kw] = None
    return out


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):  # PN: component groups joined as in the encoded value
        groups = [value.get("Alphabetic", ""), value.get("Ideographic", ""), value.get("Phonetic", "")]
        while groups and not groups[-1]:
            groups.pop()
        return "=".join(groups)
    return str(value)


# --- DICOM JSON metadata ----------------------------------------------------------------------------


def _metadata(ds: Dataset, study: str, series: str, sop: str) -> dict[str, Any]:
    prefix = f"{BASE_PLACEHOLDER}/studies/{study}/series/{series}/instances/{sop}/bulkdata/"
    return dataset_json(ds, prefix)


def _dumps(meta: dict[str, Any]) -> str:
    try:
        return json.dumps(meta, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        # A DS of "nan" or "inf" has no JSON number: such values become null (PS3.18 F.2.5).
        return json.dumps(_finite(meta), separators=(",", ":"), ensure_ascii=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
