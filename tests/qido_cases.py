"""A small archive with controlled attributes and the QIDO-RS matching table that runs against it,
both by direct index calls and over HTTP (PS3.4 C.2.2.2, PS3.18 10.6)."""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, SecondaryCaptureImageStorage

ROOT = "1.2.826.0.1.3680043.10.1234"


def uid(*parts: int) -> str:
    return ROOT + "." + ".".join(str(p) for p in parts)


@dataclass(frozen=True)
class StudySpec:
    key: str
    patient_name: str
    patient_id: str
    date: str
    time: str
    accession: str
    modalities: tuple[str, ...]
    description: str = ""
    charset: str = "ISO_IR 100"


STUDIES = (
    StudySpec("S1", "Doe^John", "P1", "20240105", "101500", "ACC1", ("CT", "MR"), "Head CT"),
    StudySpec("S2", "DOE^Jane", "P2", "20240220", "235959.5", "ACC2", ("CT",), "Chest"),
    StudySpec("S3", "Smith^Anna^Maria", "P3", "20231231", "0800", "ACC[3]", ("US",), "Abdomen"),
    StudySpec("S4", "Müller^Jürgen", "P4", "", "", "", ("OT",), "", "ISO_IR 192"),
)
INSTANCES_PER_SERIES = 3


def study_uid(key: str) -> str:
    return uid(int(key[1:]))


def series_uid(key: str, n: int) -> str:
    return uid(int(key[1:]), n)


def sop_uid(key: str, series: int, n: int) -> str:
    return uid(int(key[1:]), series, n)


def make_instance(spec: StudySpec, series: int, modality: str, number: int) -> bytes:
    ds = Dataset()
    ds.SpecificCharacterSet = spec.charset
    ds.SOPClassUID = {"CT": CTImageStorage, "MR": MRImageStorage}.get(modality, SecondaryCaptureImageStorage)
    ds.SOPInstanceUID = sop_uid(spec.key, series, number)
    ds.StudyInstanceUID = study_uid(spec.key)
    ds.SeriesInstanceUID = series_uid(spec.key, series)
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = spec.date
    ds.StudyTime = spec.time
    ds.AccessionNumber = spec.accession
    ds.StudyDescription = spec.description
    ds.ReferringPhysicianName = "Ref^Erin"
    ds.StudyID = spec.key
    ds.Modality = modality
    ds.SeriesNumber = series
    ds.SeriesDescription = f"{modality} series {series}"
    ds.InstanceNumber = number
    ds.ProtocolName = f"protocol {spec.key}"
    ds.InstitutionName = "Tessera Test Hospital"
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = (np.arange(16, dtype=np.uint16) * number).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def all_instances() -> list[bytes]:
    blobs = []
    for spec in STUDIES:
        for s, modality in enumerate(spec.modalities, start=1):
            for n in range(1, INSTANCES_PER_SERIES + 1):
                blobs.append(make_instance(spec, s, modality, n))
    return blobs


# (path relative to the DICOMweb root, query parameters, expected answers). Answers name studies
# ("S1"), series ("S1/2") or instances ("S1/2/3"); "ordered" cases compare as lists.
MATCH_CASES: list[tuple[str, str, list[tuple[str, str]], list[str]]] = [
    ("exact PN", "/studies", [("PatientName", "Doe^John")], ["S1"]),
    ("PN case-insensitive wildcard", "/studies", [("PatientName", "doe*")], ["S1", "S2"]),
    ("PN single-char wildcard", "/studies", [("PatientName", "DOE^J?NE")], ["S2"]),
    ("PN non-ASCII upper-cased", "/studies", [("PatientName", "müller*")], ["S4"]),
    ("PN by tag", "/studies", [("00100010", "Smith*")], ["S3"]),
    ("PN fuzzy component prefix", "/studies", [("PatientName", "jo"), ("fuzzymatching", "true")], ["S1"]),
    ("PN not fuzzy is exact", "/studies", [("PatientName", "jo")], []),
    ("LO exact", "/studies", [("PatientID", "P1")], ["S1"]),
    ("LO case-sensitive", "/studies", [("PatientID", "p1")], []),
    ("repeated parameter any of", "/studies", [("PatientID", "P1"), ("PatientID", "P3")], ["S1", "S3"]),
    ("DA single", "/studies", [("StudyDate", "20240105")], ["S1"]),
    ("DA range", "/studies", [("StudyDate", "20240101-20240131")], ["S1"]),
    ("DA open start", "/studies", [("StudyDate", "-20240101")], ["S3"]),
    ("DA open end", "/studies", [("StudyDate", "20240201-")], ["S2"]),
    ("TM range", "/studies", [("StudyTime", "1000-1100")], ["S1"]),
    ("TM open end with fraction", "/studies", [("StudyTime", "2359-")], ["S2"]),
    ("TM short upper bound", "/studies", [("StudyTime", "-08")], ["S3"]),
    ("wildcard literal bracket", "/studies", [("AccessionNumber", "ACC[3]")], ["S3"]),
    ("wildcard ?", "/studies", [("AccessionNumber", "ACC?")], ["S1", "S2"]),
    ("ModalitiesInStudy one", "/studies", [("ModalitiesInStudy", "MR")], ["S1"]),
    ("ModalitiesInStudy any of", "/studies", [("ModalitiesInStudy", "CT,US")], ["S1", "S2", "S3"]),
    ("ModalitiesInStudy backslash", "/studies", [("ModalitiesInStudy", "US\\OT")], ["S3", "S4"]),
    ("UID list comma", "/studies", [("StudyInstanceUID", f"{study_uid('S1')},{study_uid('S3')}")], ["S1", "S3"]),
    ("UID list backslash", "/studies", [("0020000D", f"{study_uid('S2')}\\{study_uid('S4')}")], ["S2", "S4"]),
    ("empty value is universal", "/studies", [("PatientName", "")], ["S1", "S2", "S3", "S4"]),
    ("star is universal", "/studies", [("AccessionNumber", "*")], ["S1", "S2", "S3", "S4"]),
    ("combined filters AND", "/studies", [("PatientName", "DOE*"), ("StudyDate", "20240201-")], ["S2"]),
    ("series by modality", "/series", [("Modality", "CT")], ["S1/1", "S2/1"]),
    ("series by number in study", f"/studies/{study_uid('S1')}/series", [("SeriesNumber", "2")], ["S1/2"]),
    ("series of a study", f"/studies/{study_uid('S1')}/series", [], ["S1/1", "S1/2"]),
    ("series by study attribute", "/series", [("PatientID", "P3")], ["S3/1"]),
    ("instances by number", f"/studies/{study_uid('S2')}/series/{series_uid('S2', 1)}/instances",
     [("InstanceNumber", "2")], ["S2/1/2"]),
    ("instances of study by modality", f"/studies/{study_uid('S1')}/instances", [("Modality", "MR")],
     ["S1/2/1", "S1/2/2", "S1/2/3"]),
    ("instances by SOP class", "/instances", [("SOPClassUID", MRImageStorage)], ["S1/2/1", "S1/2/2", "S1/2/3"]),
    ("instances by patient", "/instances", [("PatientName", "smith*")], ["S3/1/1", "S3/1/2", "S3/1/3"]),
]

ORDERED_CASES: list[tuple[str, str, list[tuple[str, str]], list[str]]] = [
    ("studies newest first", "/studies", [], ["S2", "S1", "S3", "S4"]),
    ("limit and offset", "/studies", [("limit", "2"), ("offset", "1")], ["S1", "S3"]),
    ("instances by number", f"/studies/{study_uid('S1')}/series/{series_uid('S1', 1)}/instances", [],
     ["S1/1/1", "S1/1/2", "S1/1/3"]),
]

# (id, path, parameters, text the 400 message must contain)
BAD_CASES: list[tuple[str, str, list[tuple[str, str]], str]] = [
    ("unknown keyword", "/studies", [("NotAKeyword", "1")], "'NotAKeyword'"),
    ("unsupported attribute", "/studies", [("ProtocolName", "x")], "'ProtocolName'"),
    ("series key at study level", "/studies", [("Modality", "CT")], "not a matching key for study-level"),
    ("sequence path", "/studies", [("00101002.00100020", "x")], "sequence"),
    ("bad date", "/studies", [("StudyDate", "2024")], "StudyDate"),
    ("wildcard in date", "/studies", [("StudyDate", "2024*")], "wildcards are not allowed"),
    ("bad time", "/studies", [("StudyTime", "25h")], "StudyTime"),
    ("empty range", "/studies", [("StudyDate", "-")], "at least one end"),
    ("bad uid", "/studies", [("StudyInstanceUID", "1.2.abc")], "not a valid UID"),
    ("bad integer", "/instances", [("InstanceNumber", "two")], "must be an integer"),
    ("limit not a number", "/studies", [("limit", "many")], "limit"),
    ("limit zero", "/studies", [("limit", "0")], "limit"),
    ("negative offset", "/studies", [("offset", "-1")], "offset"),
    ("fuzzy not boolean", "/studies", [("fuzzymatching", "maybe")], "fuzzymatching"),
    ("includefield unknown", "/studies", [("includefield", "NoSuchThing")], "'NoSuchThing'"),
]


def answer_key(item: dict) -> str:
    """The STUDIES key of a QIDO answer ("S1", "S1/2" or "S1/2/3")."""

    def key_of(study: str) -> str:
        return next(s.key for s in STUDIES if study_uid(s.key) == study)

    study = item["0020000D"]["Value"][0] if "0020000D" in item else None
    url = item["00081190"]["Value"][0]
    parts = url.split("/studies/")[1].split("/")
    study = study or parts[0]
    key = key_of(parts[0])
    if "series" in parts:
        key += "/" + parts[parts.index("series") + 1].rsplit(".", 1)[1]
    if "instances" in parts:
        key += "/" + parts[parts.index("instances") + 1].rsplit(".", 1)[1]
    return key
