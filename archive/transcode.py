"""Representations other than the stored one, for WADO-RS transfer-syntax negotiation.

Frames to native little-endian pixel bytes (decoded with the render package's codecs, the same
decoders rendering uses), whole instances to Explicit VR Little Endian, and the rare frames that have
no byte offsets (deflated files, 1-bit pixels). Must not know HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO

import numpy as np
from pydicom import dcmread, dcmwrite
from pydicom.uid import ExplicitVRLittleEndian

from archive.errors import NotAcceptable
from archive.index import InstanceRecord
from archive.parse import DEFLATED_LE, EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE, NATIVE_SYNTAXES
from render.codecs import select_backend
from render.errors import RenderError
from render.pipeline import decode_frame


def frame_to_native(frame: bytes, record: InstanceRecord) -> tuple[bytes, str]:
    """Native little-endian pixel bytes of one stored frame and their photometric interpretation
    (PS3.18 8.7.3.5.2 application/octet-stream). Decoders may hand back RGB for YBR codestreams.

    Raises NotAcceptable when the frame cannot be decoded here.
    """
    info = record.frame_info
    assert info is not None
    ts = info.transfer_syntax_uid
    photometric = info.photometric_interpretation
    if ts in (EXPLICIT_LE, IMPLICIT_LE, DEFLATED_LE):
        return frame, photometric
    if ts == EXPLICIT_BE:
        if info.bits_allocated > 8:
            width = info.bits_allocated // 8
            return np.frombuffer(frame, dtype=f">u{width}").astype(f"<u{width}").tobytes(), photometric
        if info.extras.get("ow_8bit_swapped"):
            return np.frombuffer(frame, dtype=">u2").astype("<u2").tobytes(), photometric
        return frame, photometric
    try:
        decoded = decode_frame(frame, info)
    except RenderError as exc:
        raise NotAcceptable(f"frame stored as {ts} cannot be decoded to native pixels: {exc}") from None
    array = decoded.array
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes(), decoded.photometric


def check_convertible(record: InstanceRecord) -> None:
    """Raise NotAcceptable unless ``to_explicit_le`` can decode this instance's pixel data."""
    if record.frame_info is None or record.transfer_syntax_uid in NATIVE_SYNTAXES:
        return
    try:
        select_backend(record.transfer_syntax_uid)
    except RenderError as exc:
        raise NotAcceptable(
            f"instance {record.sop_uid} stored as {record.transfer_syntax_uid} cannot be converted to "
            f"Explicit VR Little Endian: {exc}"
        ) from None


def to_explicit_le(data: bytes, record: InstanceRecord, stored_frame: Callable[[int], bytes]) -> bytes:
    """The instance re-encoded as Explicit VR Little Endian (PS3.18 8.7.3.5.2 default), pixel data
    decoded frame by frame with the render codecs (``stored_frame(n)`` gives frame n as stored).

    Raises NotAcceptable when the stored pixel data cannot be decoded here.
    """
    stored_ts = record.transfer_syntax_uid
    if stored_ts == EXPLICIT_LE:
        return data
    ds = dcmread(BytesIO(data), force=True)
    info = record.frame_info
    if info is not None and stored_ts not in NATIVE_SYNTAXES:
        frames = [frame_to_native(stored_frame(n), record) for n in range(1, info.number_of_frames + 1)]
        pixels = b"".join(f for f, _ in frames)
        ds.PixelData = pixels + (b"\x00" if len(pixels) % 2 else b"")
        ds["PixelData"].VR = "OB" if info.bits_allocated <= 8 else "OW"
        photometric = frames[0][1]
        if photometric != info.photometric_interpretation:
            ds.PhotometricInterpretation = photometric
        if info.samples_per_pixel > 1:
            ds.PlanarConfiguration = 0  # decoders hand back interleaved samples
        for tag in (0x7FE00001, 0x7FE00002):  # Extended Offset Table belongs to encapsulated data
            if tag in ds:
                del ds[tag]
    elif info is not None and stored_ts == EXPLICIT_BE:
        native = [frame_to_native(stored_frame(n), record)[0] for n in range(1, info.number_of_frames + 1)]
        ds.PixelData = b"".join(native)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = BytesIO()
    try:
        if stored_ts == EXPLICIT_BE:
            for _elem in ds.iterall():
                pass  # converts every raw big-endian element so it can be re-encoded little endian
            ds.preamble = ds.preamble or b"\x00" * 128
            dcmwrite(out, ds, implicit_vr=False, little_endian=True, force_encoding=True)
        else:
            dcmwrite(out, ds, implicit_vr=False, little_endian=True, enforce_file_format=True)
    except (ValueError, TypeError) as exc:
        raise NotAcceptable(f"instance stored as {stored_ts} cannot be written as Explicit VR Little Endian: {exc}")
    return out.getvalue()


def native_frame_from_file(data: bytes, record: InstanceRecord, number: int) -> bytes:
    """Frame ``number`` (1-based) of a file without byte offsets, as native little-endian bytes."""
    info = record.frame_info
    assert info is not None
    ds = dcmread(BytesIO(data), force=True)
    pixels = ds.PixelData
    if info.bits_allocated == 1:
        bits = np.unpackbits(np.frombuffer(pixels, np.uint8), bitorder="little")
        per_frame = info.rows * info.columns * info.samples_per_pixel
        chunk = bits[(number - 1) * per_frame : number * per_frame]
        return np.packbits(chunk, bitorder="little").tobytes()
    length = info.frame_length
    return bytes(pixels[(number - 1) * length : number * length])
