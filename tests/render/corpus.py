"""Test helper: read a corpus file with pydicom and hand out what the archive would: FrameInfo and the
stored bytes of each frame. Only tests use pydicom this way; the render package never does."""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pydicom
from pydicom.encaps import generate_frames

from render.codecs.base import EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE, NATIVE_SYNTAXES
from render.frameinfo import FrameInfo

DATA = Path(__file__).resolve().parents[1] / "data" / "dicom"

#: Files in the corpus that are meant to fail (MANIFEST.csv decode status, see FACTS.md).
MEANT_TO_FAIL = {
    "MR_truncated.dcm",
    "dwv-test_no-number-rows.dcm",
    "2026-05-26-oob-monochrome-65535.dcm",
    "1.2.840.10008.1.2.4.51.dcm",
}


def manifest() -> list[dict[str, str]]:
    with open(DATA / "MANIFEST.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def all_files() -> list[str]:
    return [row["file"] for row in manifest()]


def renderable_files() -> list[str]:
    return [f for f in all_files() if Path(f).name not in MEANT_TO_FAIL]


@dataclass
class Loaded:
    ds: pydicom.Dataset
    info: FrameInfo
    frames: list[bytes]


def detect_ts(ds: pydicom.Dataset) -> str:
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if ts:
        return str(ts)
    implicit, little = ds.original_encoding
    return IMPLICIT_LE if implicit else (EXPLICIT_LE if little else EXPLICIT_BE)


@lru_cache(maxsize=8)
def load(name: str) -> Loaded:
    with warnings.catch_warnings():
        # Real-world files: bad Specific Character Set spellings and the like are not our concern here.
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(DATA / name, force=True)
        ds.PixelData  # noqa: B018 - force the deferred read inside the warning filter
    ts = detect_ts(ds)
    if not ds.file_meta.get("TransferSyntaxUID"):
        ds.file_meta.TransferSyntaxUID = ts  # FACTS.md: decodes once the detected syntax is set
    info = FrameInfo.from_dataset(ds, ts)
    if ts in NATIVE_SYNTAXES:
        data = ds.PixelData
        n = info.frame_length
        frames = [bytes(data[i * n : (i + 1) * n]) for i in range(info.number_of_frames)]
    else:
        frames = list(generate_frames(ds.PixelData, number_of_frames=info.number_of_frames))
    return Loaded(ds, info, frames)


def pydicom_pixels(loaded: Loaded, frame: int) -> np.ndarray:
    """pydicom's decoded frame (YBR converted to RGB, as pixel_array does by default)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "RGB but the codestream has a JFIF marker"
        arr = loaded.ds.pixel_array
    return arr[frame] if loaded.info.number_of_frames > 1 else arr
