"""archive.dicomjson must give exactly the DICOM JSON of pydicom's to_json_dict (archive.parse), faster.

Every comparison reads the bytes twice: conversion changes the Dataset it works on.
"""

from __future__ import annotations

import json
import random
import struct
import zlib
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pydicom.data
import pytest
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

from archive import synth
from archive.dicomjson import BULK_THRESHOLD, dataset_json
from archive.parse import BASE_PLACEHOLDER

PREFIX = f"{BASE_PLACEHOLDER}/studies/1/series/2/instances/3/bulkdata/"
DATA = Path(__file__).parents[1] / "data" / "dicom"
PYDICOM_DATA = Path(pydicom.data.__file__).parent
SYNTAXES = {
    "implicit": "1.2.840.10008.1.2",
    "explicit": "1.2.840.10008.1.2.1",
    "deflated": "1.2.840.10008.1.2.1.99",
    "bigendian": "1.2.840.10008.1.2.2",
}
Converter = Callable[[pydicom.Dataset, str, str], dict[str, Any]]


# The reference: pydicom's own element conversion, as ingest did it before archive/dicomjson.py.
def _dataset_json(ds: Dataset, prefix: str, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for elem in ds:  # group 0002 lives in file_meta, not in the dataset: metadata excludes it
        key = f"{elem.tag:08X}"
        if elem.VR == "SQ":
            items = [_dataset_json(item, prefix, f"{path}{key}/{i}/") for i, item in enumerate(elem.value)]
            out[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
            continue
        if elem.tag == 0x7FE00010:
            out[key] = {"vr": elem.VR, "BulkDataURI": prefix + path + key}
            continue
        out[key] = _element_json(elem, prefix + path + key)
    return out


def _element_json(elem: DataElement, uri: str) -> dict[str, Any]:
    try:
        return elem.to_json_dict(lambda _e: uri, BULK_THRESHOLD)
    except (ValueError, TypeError, AttributeError):
        # A value pydicom cannot express in JSON (malformed number, bad charset): keep the VR, drop
        # the value rather than refuse the instance; the original bytes remain retrievable.
        return {"vr": elem.VR}


def _json(convert: Converter, data: bytes, path: str = "") -> str:
    ds = pydicom.dcmread(BytesIO(data), force=True)
    try:
        return json.dumps(convert(ds, PREFIX, path), sort_keys=True)
    except Exception as exc:  # noqa: BLE001 - the old conversion raises for some values: so must the new
        return f"raised {type(exc).__name__}"


def assert_same_as_pydicom(data: bytes, path: str = "") -> dict[str, Any]:
    expected = _json(_dataset_json, data, path)
    assert _json(dataset_json, data, path) == expected
    return json.loads(expected) if not expected.startswith("raised") else {}


# --- golden equality on real and synthetic files -----------------------------------------------------


def _readable(paths: list[Path]) -> list[Path]:
    out = []
    for path in paths:
        try:
            pydicom.dcmread(path, force=True)
        except (InvalidDicomError, EOFError, ValueError, TypeError, struct.error, OSError):
            continue  # not DICOM at all: nothing to compare
        out.append(path)
    return out


CORPUS = _readable(
    sorted(p for p in DATA.rglob("*") if p.is_file() and p.suffix != ".csv")
    + sorted((PYDICOM_DATA / "test_files").glob("*.dcm"))
    + sorted((PYDICOM_DATA / "charset_files").glob("*.dcm"))
)


def test_corpus_covers_the_odd_encodings() -> None:
    encodings = set()
    for path in CORPUS:
        ds = pydicom.dcmread(path, force=True)
        charset = ds.original_character_set
        encodings.add((ds.original_encoding, tuple([charset] if isinstance(charset, str) else charset)))
    kinds = {e for e, _ in encodings}
    assert {(True, True), (False, True), (False, False)} <= kinds  # implicit, explicit, big endian
    charsets = {c for _, c in encodings}
    assert ("UTF8",) in charsets and ("iso_ir_144",) in charsets and len(CORPUS) > 150


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_file_matches_pydicom(path: Path) -> None:
    assert_same_as_pydicom(path.read_bytes())


def _synth_bytes(syntax: str, modality: synth.Modality = "CT", rows: int = 64) -> list[bytes]:
    out = []
    for ds in synth.synth_series(modality=modality, rows=rows, columns=rows, slices=2, syntax=syntax):
        buf = BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


@pytest.mark.parametrize("syntax", ["explicit", "implicit", "bigendian", "deflated", "rle", "jpeg-lossless"])
def test_synthetic_series_matches_pydicom(syntax: str) -> None:
    for data in _synth_bytes(syntax, "MR" if syntax == "implicit" else "CT"):
        assert_same_as_pydicom(data)


def test_fast_path_leaves_common_elements_raw() -> None:
    # The point of the module: a typical CT converts without pydicom building DataElements.
    ds = pydicom.dcmread(BytesIO(_synth_bytes("explicit")[0]), force=True)
    dataset_json(ds, PREFIX)
    converted = [f"{tag:08X}" for tag, e in ds._dict.items() if not isinstance(e, RawDataElement)]
    assert converted == ["00080005"]  # read by dcmread itself to learn the character set


# --- hand-made elements ------------------------------------------------------------------------------

_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}


def _element(tag: int, vr: str, value: bytes, syntax: str) -> bytes:
    end = ">" if syntax == "bigendian" else "<"
    if syntax == "implicit":
        return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value
    if vr in _LONG_VRS:
        return struct.pack(f"{end}HH2sHI", tag >> 16, tag & 0xFFFF, vr.encode(), 0, len(value)) + value
    return struct.pack(f"{end}HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value


def _sequence(tag: int, items: list[bytes], syntax: str) -> bytes:
    """An undefined-length sequence of undefined-length items (PS3.5 7.5)."""
    end = ">" if syntax == "bigendian" else "<"
    if syntax == "implicit":
        head = struct.pack("<HHI", tag >> 16, tag & 0xFFFF, 0xFFFFFFFF)
    else:
        head = struct.pack(f"{end}HH2sHI", tag >> 16, tag & 0xFFFF, b"SQ", 0, 0xFFFFFFFF)
    body = b"".join(
        struct.pack(f"{end}HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
        + item
        + struct.pack(f"{end}HHI", 0xFFFE, 0xE00D, 0)
        for item in items
    )
    return head + body + struct.pack(f"{end}HHI", 0xFFFE, 0xE0DD, 0)


def _file(body: bytes, syntax: str) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
    meta.MediaStorageSOPInstanceUID = UID("1.2.3.4")
    meta.TransferSyntaxUID = UID(SYNTAXES[syntax])
    buf = DicomBytesIO()
    buf.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buf, meta, enforce_standard=True)
    if syntax == "deflated":
        packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        body = packer.compress(body) + packer.flush()
    return buf.getvalue() + body


def _pack(syntax: str, fmt: str, *numbers: float) -> bytes:
    return struct.pack(f"{'>' if syntax == 'bigendian' else '<'}{len(numbers)}{fmt}", *numbers)


# (tag, VR, value): tags carry that VR in the dictionary, so implicit VR decodes them the same way.
# A value is bytes, or (struct format, numbers) packed in the syntax's byte order.
CASES: dict[str, tuple[int, str, bytes | tuple[str, tuple[float, ...]]]] = {
    "AE padded": (0x00080054, "AE", b" STORESCP \\ QR  "),
    "AS": (0x0072005F, "AS", b"042Y"),
    "AT two tags": (0x00280009, "AT", ("H", (0x0018, 0x1063, 0x0018, 0x1065))),
    "CS multi with empty": (0x00080008, "CS", b"ORIGINAL\\\\AXIAL "),
    "CS all empty components": (0x00080008, "CS", b"\\"),
    "CS only padding": (0x00080008, "CS", b"  "),
    "DA": (0x00181200, "DA", b"20240102\\20250101"),
    "DT": (0x0040A13A, "DT", b"20240102030405.123+0100 "),
    "TM": (0x00181201, "TM", b"101010.5 "),
    "DS odd forms": (0x00082130, "DS", b"1.50\\-0\\ 3\\1e3\\.5 "),
    "DS single integer": (0x00082130, "DS", b"7 "),
    "DS empty component": (0x00082130, "DS", b"1\\\\2 "),
    "DS malformed": (0x00082130, "DS", b"1,5"),
    "DS nan": (0x00082130, "DS", b"nan "),
    "IS signs": (0x00081160, "IS", b"+1\\ 7\\-3\\007 "),
    "IS fractional": (0x00081160, "IS", b"1.5 "),
    "IS empty component": (0x00081160, "IS", b"1\\\\2 "),
    "IS spaces only": (0x00081160, "IS", b"  "),
    "LO multi trailing": (0x00081080, "LO", b"first  \\second\x00\\ third"),
    "SH empty components": (0x00102154, "SH", b"\\\\x"),
    "UC": (0x00160008, "UC", b"a\\b "),
    "LT keeps backslash": (0x00080108, "LT", b"line one\\line two \x00"),
    "ST": (0x00080081, "ST", b"  Street 1 "),
    "UT": (0x0008030E, "UT", b"text\\more  "),
    "UR": (0x00081190, "UR", b"http://example.com/a b  "),
    "UI padded": (0x0008001A, "UI", b"1.2.3\\1.2.4\x00"),
    "PN groups": (0x00081048, "PN", b"Yamada^Tarou=\xe5\xb1\xb1\xe7\x94\xb0=Yamada \\Doe^J\\^^^^="),
    "PN trailing equals": (0x00081048, "PN", b"Doe^John=="),
    "PN only equals": (0x00081048, "PN", b"=="),
    "PN empty in multi": (0x00081048, "PN", b"A\\\\B"),
    "US multi": (0x00080304, "US", ("H", (1, 65535))),
    "SS": (0x00189442, "SS", ("h", (-1, 2, -32768, 4))),
    "UL": (0x00081161, "UL", ("L", (4294967295,))),
    "SL": (0x0040A162, "SL", ("l", (-5, 6))),
    "UV": (0x00720083, "UV", ("Q", (2**64 - 1,))),
    "SV": (0x00720082, "SV", ("q", (-(2**63),))),
    "FL list": (0x00186060, "FL", ("f", (0.1, -2.5, 3e38))),
    "FD list": (0x00189079, "FD", ("d", (0.1, -0.0, 1e300))),
    "FD wrong length": (0x00189079, "FD", b"\x00" * 12),
    "OB small": (0x00420011, "OB", bytes(range(256)) * 3),  # 768 bytes: the largest inline value
    "OB large": (0x00420011, "OB", bytes(range(256)) * 3 + b"\x00\x01"),
    "OW small": (0x00281201, "OW", b"\x01\x02" * 10),
    "OW large": (0x00281201, "OW", b"\x01\x02" * 1000),
    "OF": (0x00181638, "OF", _pack("explicit", "f", 1.0, 2.0)),
    "OD": (0x00660022, "OD", _pack("explicit", "d", 1.0)),
    "OL": (0x00660040, "OL", b"\x01\x00\x00\x00"),
    "OV": (0x00720081, "OV", b"\x01" * 8),
    "UN": (0x0072006D, "UN", b"\x01\x02"),
    "empty AE": (0x00080054, "AE", b""),
    "empty PN": (0x00081048, "PN", b""),
    "empty FL": (0x00186060, "FL", b""),
    "empty OB": (0x00420011, "OB", b""),
}


def _case_bytes(case: str, syntax: str, charset: bytes | None = None) -> bytes:
    tag, vr, value = CASES[case]
    raw = value if isinstance(value, bytes) else _pack(syntax, value[0], *value[1])
    body = _element(0x00080005, "CS", charset, syntax) if charset else b""
    return _file(body + _element(tag, vr, raw, syntax), syntax)


@pytest.mark.parametrize("syntax", ["implicit", "explicit", "bigendian"])
@pytest.mark.parametrize("case", CASES)
def test_hand_made_element_matches_pydicom(case: str, syntax: str) -> None:
    assert_same_as_pydicom(_case_bytes(case, syntax, b"ISO_IR 192" if case.startswith("PN") else None))


@pytest.mark.parametrize(
    ("case", "value"),
    [
        ("DS odd forms", [1.5, -0.0, 3.0, 1000.0, 0.5]),
        ("IS signs", [1, 7, -3, 7]),
        ("CS multi with empty", ["ORIGINAL", "", "AXIAL"]),
        ("AE padded", ["STORESCP", "QR"]),
        ("LT keeps backslash", ["line one\\line two"]),
        ("AT two tags", ["00181063", "00181065"]),
        ("FL list", [struct.unpack("<f", struct.pack("<f", v))[0] for v in (0.1, -2.5, 3e38)]),
        (
            "PN groups",
            [
                {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田", "Phonetic": "Yamada "},
                {"Alphabetic": "Doe^J"},
                {"Alphabetic": "^^^^"},
            ],
        ),
    ],
)
def test_values_follow_annex_f(case: str, value: list[Any]) -> None:
    for syntax in ("explicit", "bigendian"):
        out = dataset_json(
            pydicom.dcmread(BytesIO(_case_bytes(case, syntax, b"ISO_IR 192")), force=True), PREFIX
        )
        tag = f"{CASES[case][0]:08X}"
        assert out[tag] == {"vr": CASES[case][1], "Value": value}


def test_binary_values_inline_up_to_the_threshold_then_by_reference() -> None:
    small = dataset_json(pydicom.dcmread(BytesIO(_case_bytes("OB small", "explicit")), force=True), PREFIX)
    large = dataset_json(pydicom.dcmread(BytesIO(_case_bytes("OB large", "explicit")), force=True), PREFIX)
    assert len(small["00420011"]["InlineBinary"]) == 1024
    assert large["00420011"] == {"vr": "OB", "BulkDataURI": PREFIX + "00420011"}


@pytest.mark.parametrize("syntax", ["implicit", "explicit", "bigendian", "deflated"])
def test_nested_sequences_with_bulk_data(syntax: str) -> None:
    big = _element(0x00420011, "OB", b"\x07" * 2000, syntax)
    inner = _sequence(0x00400275, [_element(0x00081048, "PN", b"Doe^J", syntax) + big], syntax)
    item0 = _element(0x0008001A, "UI", b"1.2.3\x00", syntax) + inner + big
    body = (
        _element(0x00080005, "CS", b"ISO_IR 100", syntax)
        + _sequence(0x00081115, [item0, b"", _element(0x00081160, "IS", b"3 ", syntax)], syntax)
        + _sequence(0x00081140, [], syntax)
        + _element(0x7FE00010, "OW", b"\x00\x01" * 8, syntax)
    )
    out = assert_same_as_pydicom(_file(body, syntax), "base/")
    item = out["00081115"]["Value"][0]
    assert item["00420011"]["BulkDataURI"] == PREFIX + "base/00081115/0/00420011"
    nested = item["00400275"]["Value"][0]["00420011"]
    assert nested["BulkDataURI"] == PREFIX + "base/00081115/0/00400275/0/00420011"
    assert out["00081115"]["Value"][1] == {} and out["00081140"] == {"vr": "SQ"}
    assert out["7FE00010"] == {"vr": "OW", "BulkDataURI": PREFIX + "base/7FE00010"}


@pytest.mark.parametrize(
    ("charset", "encoded", "text"),
    [
        (b"ISO_IR 192", "Ünïcødé 山田".encode(), "Ünïcødé 山田"),
        (b"ISO_IR 100", "Müller".encode("latin-1"), "Müller"),
        (b"ISO_IR 144", "Иванов".encode("iso8859-5"), "Иванов"),  # Cyrillic: pydicom decodes it
        (b"ISO_IR 192", b"bad \xff utf-8", "bad \ufffd utf-8"),  # pydicom substitutes and warns
        (b"ISO 2022 IR 6\\ISO 2022 IR 87", b"\x1b$B;3ED\x1b(B", "山田"),  # code extensions
    ],
)
def test_text_in_each_character_set(charset: bytes, encoded: bytes, text: str) -> None:
    body = _element(0x00080005, "CS", charset, "explicit") + _element(0x00081080, "LO", encoded, "explicit")
    out = assert_same_as_pydicom(_file(body, "explicit"))
    assert out["00081080"]["Value"] == [text]


def test_non_default_pydicom_settings_go_through_pydicom(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pydicom.config, "use_none_as_empty_text_VR_value", True)
    monkeypatch.setattr(pydicom.config, "datetime_conversion", True)
    for case in ("CS multi with empty", "DA", "DS odd forms"):
        assert_same_as_pydicom(_case_bytes(case, "explicit"))


# --- random values -----------------------------------------------------------------------------------

_TEXT_CHARS = ["A", "z", "1", " ", " ", "\\", "=", "^", "\x00", ".", "-", "+", "e", "\xe9", "\t"]
_NUMBER_CHARS = ["0", "1", "5", "9", " ", "\\", ".", "+", "-", "e", "\x00"]
_RANDOM_TAGS = [(tag, vr) for tag, vr, _ in CASES.values() if vr not in ("OB", "OW", "OF", "OD", "OL", "OV")]


@pytest.mark.parametrize("syntax", ["implicit", "explicit", "bigendian"])
def test_random_values_match_pydicom(syntax: str) -> None:
    rng = random.Random(f"dicomjson-{syntax}")
    for _ in range(400):
        tag, vr = rng.choice(_RANDOM_TAGS)
        if vr in ("DS", "IS"):
            value = "".join(rng.choices(_NUMBER_CHARS, k=rng.randint(0, 12))).encode("latin-1")
        elif vr in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "AT", "UN"):
            value = rng.randbytes(rng.choice([0, 2, 4, 8, 16, 3, 6]))
        else:
            value = "".join(rng.choices(_TEXT_CHARS, k=rng.randint(0, 12))).encode("latin-1")
        charset = rng.choice([b"", b"ISO_IR 100", b"ISO_IR 192"])
        body = _element(0x00080005, "CS", charset, syntax) if charset else b""
        data = _file(body + _element(tag, vr, value, syntax), syntax)
        assert _json(dataset_json, data) == _json(_dataset_json, data), (vr, value, charset)
