"""DICOM JSON (PS3.18 Annex F) for a Dataset read from bytes, straight from its raw elements.

Produces exactly what ``DataElement.to_json_dict`` produces element by element (same keys, "vr",
"Value", "InlineBinary" and "BulkDataURI"), but converts the still-raw elements of the common kinds
from their encoded bytes with plain Python instead of letting pydicom build a DataElement for each
one, which is where ingest spent most of its parse time. Anything it cannot convert exactly as pydicom
would (other character sets, ambiguous or unknown VRs, UN, sequences, malformed or unusual values,
non-default pydicom configuration) goes through pydicom's own conversion, element by element, so the
output never differs. Must not write anything, and must not change the JSON: it is an optimisation
only. Elements it converts itself stay raw in the Dataset; the pydicom fallback converts in place, as
pydicom always does. pydicom's reading-validation warnings (over-long or out-of-repertoire text, which
never change the value) are not repeated on the fast path.
"""

from __future__ import annotations

import base64
import re
import struct
from typing import Any

import pydicom.valuerep
from pydicom import config
from pydicom.datadict import DicomDictionary
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.hooks import hooks, raw_element_value, raw_element_vr
from pydicom.tag import _LUT_DESCRIPTOR_TAGS

BULK_THRESHOLD = 1024  # same as archive.parse: base64 text above this goes out as a BulkDataURI
# pydicom's rule: bulk when the raw length exceeds what base64 encodes into the threshold.
_BULK_BYTES = (BULK_THRESHOLD // 4) * 3
_PIXEL_DATA = 0x7FE00010
# Plain ints: BaseTag compares in Python, which showed up as the top cost per element.
_LUT_DESCRIPTORS = frozenset(int(t) for t in _LUT_DESCRIPTOR_TAGS)

# pydicom's Python codec names (from SpecificCharacterSet) whose text can be decoded as a whole and
# split on backslash afterwards; multi-byte and ISO 2022 sets need pydicom's per-fragment decoding.
_FAST_CODECS = frozenset({"iso8859", "latin_1", "UTF8"})
# pydicom decodes these VRs with the default repertoire whatever SpecificCharacterSet says.
_LATIN = "latin_1"

# Only numbers Python's int()/float() read the way the DICOM grammar means them: anything else
# (empty components, "1.5" for IS, "nan", "1_000", tabs) goes to pydicom, which has its own rules.
_IS_RE = re.compile(r" *[+-]?[0-9]+ *")
_DS_RE = re.compile(r" *[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)? *")
_NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "UV": "Q", "SV": "q", "FL": "f", "FD": "d"}
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})  # UN left to pydicom: it may re-type it


def dataset_json(ds: Dataset, uri_prefix: str, path: str = "") -> dict[str, Any]:
    """Return the DICOM JSON object (PS3.18 F.2) of every element of ``ds``, sequences included.

    Pixel Data (7FE0,0010) is always a BulkDataURI ``uri_prefix + path + "7FE00010"``; other binary
    values longer than BULK_THRESHOLD allows inline get ``uri_prefix + path + tag``; items of a
    sequence use the path ``f"{path}{tag}/{index}/"``. Raises whatever pydicom raises for an element
    it cannot convert (e.g. IndexError for an empty name inside a multi-valued PN), exactly as the
    pydicom-only conversion did.
    """
    return _dataset(ds, uri_prefix, path, _fast_path_allowed())


def _fast_path_allowed() -> bool:
    # Raw conversion below mirrors pydicom's default hooks and settings; any customisation (set once
    # at start-up, if ever) changes pydicom's values, so everything then goes through pydicom.
    return (
        hooks.raw_element_vr is raw_element_vr
        and hooks.raw_element_value is raw_element_value
        and not hooks.raw_element_kwargs
        and config.data_element_callback is None
        and config.settings.reading_validation_mode != config.RAISE
        and pydicom.valuerep.DSclass is pydicom.valuerep.DSfloat
        and not (config.use_DS_numpy or config.use_IS_numpy or config.datetime_conversion)
        and not config.use_none_as_empty_text_VR_value
    )


def _dataset(ds: Dataset, prefix: str, path: str, fast: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    elements = ds._dict
    codec = _text_codec(ds) if fast else None
    # Group 0002 lives in file_meta, not in the dataset, so the metadata leaves it out by itself.
    for tag in sorted(elements, key=int):
        number = int(tag)
        key = f"{number:08X}"
        raw = elements[tag]
        if fast and isinstance(raw, RawDataElement):
            converted = _raw_json(raw, number, prefix + path + key, codec)
            if converted is not None:
                out[key] = converted
                continue
        elem = ds[tag]  # pydicom's conversion, ambiguous-VR correction included; raises as it does
        if elem.VR == "SQ":
            items = [_dataset(item, prefix, f"{path}{key}/{i}/", fast) for i, item in enumerate(elem.value)]
            out[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
        elif number == _PIXEL_DATA:
            out[key] = {"vr": elem.VR, "BulkDataURI": prefix + path + key}
        else:
            out[key] = _element_json(elem, prefix + path + key)
    return out


def _element_json(elem: DataElement, uri: str) -> dict[str, Any]:
    try:
        return elem.to_json_dict(lambda _e: uri, BULK_THRESHOLD)
    except (ValueError, TypeError, AttributeError):
        # A value pydicom cannot express in JSON (malformed number, bad charset): keep the VR, drop
        # the value rather than refuse the instance; the original bytes remain retrievable.
        return {"vr": elem.VR}


def _text_codec(ds: Dataset) -> str | None:
    """The codec for charset-dependent VRs when a plain decode is exact, else None (pydicom decodes)."""
    # The same expression pydicom uses when it converts an element of this dataset.
    encodings = ds.original_character_set or ds._character_set
    if isinstance(encodings, str):
        encodings = [encodings]
    if len(encodings) == 1 and encodings[0] in _FAST_CODECS:
        return str(encodings[0])
    return None


def _raw_json(raw: RawDataElement, tag: int, uri: str, codec: str | None) -> dict[str, Any] | None:
    """One raw element as DICOM JSON, or None when pydicom must convert it."""
    vr = raw.VR
    if vr is None:  # implicit VR: the public dictionary's VR, as pydicom looks it up
        entry = DicomDictionary.get(tag)
        if entry is None:  # private, repeating-group or unknown tags: pydicom has more rules
            return None
        vr = entry[0]
    value = raw.value
    if value is None:  # deferred read: pydicom fetches it from the file
        return None
    if tag == _PIXEL_DATA:
        # Always by reference; only the VR is needed, and an implicit 'OB or OW' needs pydicom.
        return {"vr": vr, "BulkDataURI": uri} if vr in ("OB", "OW") else None
    if raw.length != len(value) or tag in _LUT_DESCRIPTORS:
        return None  # undefined length or truncated; LUT descriptors get a sign fix from pydicom
    if vr in _BINARY_VRS:
        if not value:
            return {"vr": vr}
        if len(value) > _BULK_BYTES:
            return {"vr": vr, "BulkDataURI": uri}
        return {"vr": vr, "InlineBinary": base64.b64encode(value).decode("ascii")}
    convert = _CONVERTERS.get(vr)
    if convert is None:  # SQ, UN, ambiguous or unknown VRs
        return None
    if not value:
        return {"vr": vr}
    items = convert(value, raw.is_little_endian, codec, vr)
    if items is None:
        return None
    return {"vr": vr, "Value": items} if items else {"vr": vr}


# Converters: (value, little endian, text codec, VR) -> the "Value" list, [] for "no Value", or None
# when pydicom must convert the element. Each one mirrors the pydicom.values function named.


def _single_or_empty(parts: list[str]) -> list[str]:
    # One empty string is an empty element (VM 0, no "Value"); empty components of a multi-value stay.
    return [] if len(parts) == 1 and not parts[0] else parts


def _ae(value: bytes, little: bool, codec: str | None, vr: str) -> list[Any] | None:
    # convert_AE_string: leading and trailing spaces are both insignificant.
    return _single_or_empty([s.strip() for s in value.decode(_LATIN).split("\\")])


def _string(value: bytes, little: bool, codec: str | None, vr: str) -> list[Any] | None:
    # convert_string / convert_*_string without datetime conversion: strip trailing
    # padding of the whole value, then split.
    return _single_or_empty(value.decode(_LATIN).rstrip(" \x00").split("\\"))


def _ui(value: bytes, little: bool, codec: str | None, vr: str) -> list[Any] | None:
    # convert_UI, and pydicom's UID class strips every component of all surrounding whitespace.
    return _single_or_empty([s.strip() for s in value.decode(_LATIN).rstrip(" \x00").split("\\")])


def _ur(value: bytes, little: bool, codec: str | None, vr: str) -> list[Any] | None:
    text = value.decode(_LATIN).rstrip()
    return [text] if text else []


def _decode(value: bytes, codec: str | None) -> str | None:
    # ESC starts an ISO 2022 code extension, and a bad byte makes pydicom warn and substitute.
    if codec is None or b"\x1b" in value:
        return None
    try:
        return value.decode(codec)
    except UnicodeDecodeError:
        return None


def _text(value: bytes, little: bool, codec: str | None, vr: str) -> list[Any] | None:
    # convert_text (SH, LO, UC): split first, then strip each component's trailing padding.
    text = _decode(value, codec)
    if text is None:
        return None
    return _single_or_empty([s.rstrip("\x00 ") for s in text.split("\\")])


def _single_text(value: bytes, little: bool, codec: str | None, vr: str) -> list[Any] | None:
    # convert_single_string (ST, LT, UT): backslash is ordinary text in these VRs.
    text = _decode(value, codec)
    if text is None:
        return None
    text = text.rstrip("\x00 ")
    return [text] if text else []


def _pn(value: bytes, little: bool, codec: str | None, vr: str) -> list[Any] | None:
    # convert_PN + PersonName: component groups split on '=', trailing empty groups dropped.
    text = _decode(value.rstrip(b"\x00 "), codec)
    if text is None:
        return None
    names: list[dict[str, str]] = []
    parts = text.split("\\")
    for part in parts:
        groups = part.split("=")
        while groups and not groups[-1]:
            groups.pop()
        if not groups:
            # Alone it is an empty element; inside a multi-value pydicom fails on it, so let it.
            return [] if len(parts) == 1 else None
        name = {"Alphabetic": groups[0]}
        if len(groups) > 1:
            name["Ideographic"] = groups[1]
        if len(groups) > 2:
            name["Phonetic"] = groups[2]
        names.append(name)
    return names


def _is(value: bytes, little: bool, codec: str | None, vr: str) -> list[Any] | None:
    parts = value.decode(_LATIN).rstrip(" \x00").split("\\")
    if len(parts) == 1 and not parts[0]:
        return []
    if not all(_IS_RE.fullmatch(p) for p in parts):
        return None
    return [int(p) for p in parts]


def _ds(value: bytes, little: bool, codec: str | None, vr: str) -> list[Any] | None:
    # convert_DS_string strips the whole value first; DICOM JSON carries DS as a JSON number.
    parts = value.decode(_LATIN).strip().rstrip(" \x00").split("\\")
    if len(parts) == 1 and not parts[0]:
        return []
    if not all(_DS_RE.fullmatch(p) for p in parts):
        return None
    return [float(p) for p in parts]


def _number(value: bytes, little: bool, codec: str | None, vr: str) -> list[Any] | None:
    fmt = _NUMBER_FORMATS[vr]
    size = struct.calcsize("<" + fmt)  # standard sizes: native "L" would be 8 bytes
    if len(value) % size:
        return None  # pydicom re-types a wrong-length value (or raises): let it
    return list(struct.unpack(f"{'<' if little else '>'}{len(value) // size}{fmt}", value))


def _at(value: bytes, little: bool, codec: str | None, vr: str) -> list[Any] | None:
    if len(value) % 4:
        return None  # pydicom logs and truncates
    words = struct.unpack(f"{'<' if little else '>'}{len(value) // 2}H", value)
    return [f"{words[i]:04X}{words[i + 1]:04X}" for i in range(0, len(words), 2)]


_CONVERTERS = {
    "AE": _ae,
    **dict.fromkeys(("AS", "CS", "DA", "DT", "TM"), _string),
    "UI": _ui,
    "UR": _ur,
    **dict.fromkeys(("SH", "LO", "UC"), _text),
    **dict.fromkeys(("ST", "LT", "UT"), _single_text),
    "PN": _pn,
    "IS": _is,
    "DS": _ds,
    **dict.fromkeys(_NUMBER_FORMATS, _number),
    "AT": _at,
}
