"""Test helper: one synthetic CT frame in a given syntax (via archive.synth), as the archive would
hand it to the render package, plus the stored pixel values it must decode to."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
from pydicom.encaps import generate_frames

from render.codecs.base import NATIVE_SYNTAXES
from render.frameinfo import FrameInfo


def synth_frame(syntax: str, rows: int = 512, columns: int = 512) -> tuple[FrameInfo, bytes, np.ndarray]:
    from archive.synth import synth_series

    ds = next(iter(synth_series(modality="CT", rows=rows, columns=columns, slices=1, syntax=syntax, seed=0)))
    ts = str(ds.file_meta.TransferSyntaxUID)
    info = FrameInfo.from_dataset(ds, ts)
    if ts in NATIVE_SYNTAXES:
        frame = bytes(ds.PixelData)
        if ts == "1.2.840.10008.1.2.2" and not _looks_big_endian(ds, frame, info):
            frame = np.frombuffer(frame, "<u2").astype(">u2").tobytes()
    else:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pixels = ds.pixel_array
    return info, frame, pixels


def _looks_big_endian(ds: pydicom.Dataset, frame: bytes, info: FrameInfo) -> bool:
    # In-memory datasets may hold little endian bytes until written; compare with pixel_array.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        px = ds.pixel_array
    be = np.frombuffer(frame, ">u2").reshape(info.rows, info.columns).astype(np.int64) & ((1 << info.bits_stored) - 1)
    return bool((be == (px.astype(np.int64) & ((1 << info.bits_stored) - 1))).all())
