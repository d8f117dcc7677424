"""Representations other than the stored one, for WADO-RS transfer-syntax negotiation.

Whole instances to Explicit VR Little Endian (decompressing when stored compressed), frames to
native little-endian pixel bytes, and the rare frames that have no byte offsets (deflated files,
1-bit pixels). These parse the stored file: never on the rendering path. Must not know HTTP.
"""

from __future__ import annotations

from io import BytesIO

import numpy as np
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian

from archive.errors import NotAcceptable
from archive.index import InstanceRecord
from archive.parse import EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE, NATIVE_SYNTAXES, native_frame_length


def to_explicit_le(data: bytes, stored_ts: str) -> bytes:
    """The instance re-encoded as Explicit VR Little Endian (PS3.18 8.7.3.5.2 default).

    Raises NotAcceptable when the stored pixel data cannot be decoded here.
    """
    if stored_ts == EXPLICIT_LE:
        return data
    ds = dcmread(BytesIO(data), force=True)
    if stored_ts not in NATIVE_SYNTAXES:
        try:
            ds.decompress(
                generate_instance_uid=False,
                decoding_plugin="pylibjpeg" if _pylibjpeg_decodes(stored_ts) else "",
            )
        except (RuntimeError, ValueError, NotImplementedError) as exc:
            raise NotAcceptable(
                f"instance stored as {stored_ts} cannot be converted to Explicit VR Little Endian: {exc}"
            ) from None
    elif stored_ts == EXPLICIT_BE and "PixelData" in ds and ds.get("BitsAllocated", 8) > 8:
        # pydicom writes big-endian pixel bytes unchanged: swap them into little endian first.
        arr = np.frombuffer(ds.PixelData, dtype=f">u{ds.BitsAllocated // 8}")
        ds.PixelData = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = BytesIO()
    ds.save_as(out, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return out.getvalue()


def _pylibjpeg_decodes(ts: str) -> bool:
    # pydicom's default plugin order changes with what is installed (FACTS.md): choose explicitly
    # wherever pylibjpeg handles the syntax; imagecodecs-only syntaxes fall back to pydicom's choice.
    return ts in {
        "1.2.840.10008.1.2.5",
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.4.203",
    }


def frame_to_native(frame: bytes, record: InstanceRecord) -> bytes:
    """Native little-endian pixel bytes of one stored frame (PS3.18 8.7.3.5.2 application/octet-stream).

    Raises NotAcceptable when the frame cannot be decoded here.
    """
    info = record.frame_info
    assert info is not None
    ts = info.transfer_syntax_uid
    if ts in (EXPLICIT_LE, IMPLICIT_LE, "1.2.840.10008.1.2.1.99"):
        return frame
    if ts == EXPLICIT_BE:
        if info.bits_allocated <= 8:
            if info.extras.get("ow_8bit_swapped"):
                return np.frombuffer(frame, dtype=">u2").astype("<u2").tobytes()
            return frame
        return np.frombuffer(frame, dtype=f">u{info.bits_allocated // 8}").astype(
            f"<u{info.bits_allocated // 8}"
        ).tobytes()
    from render.errors import RenderError
    from render.pipeline import decode_frame

    try:
        array = decode_frame(frame, info)
    except RenderError as exc:
        raise NotAcceptable(f"frame stored as {ts} cannot be decoded to native pixels: {exc}") from None
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


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
    length = native_frame_length(info)
    return bytes(pixels[(number - 1) * length : number * length])
