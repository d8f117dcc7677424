"""imagecodecs backend: libjpeg-turbo 3 (JPEG baseline, extended, lossless), CharLS (JPEG-LS),
OpenJPEG (JPEG 2000, one frame on several threads when asked), OpenJPH (HTJ2K, with reduced-resolution decode) and DICOM RLE.

Every call releases the GIL. The import is guarded: without imagecodecs ``is_available()`` is False
and nothing else breaks. Must not mask, rescale or convert colour beyond what the library does (and
reports through ``DecodedFrame.photometric``).
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from render.codecs.base import (
    HTJ2K_SYNTAXES,
    J2K_SYNTAXES,
    JPEG_LOSSLESS,
    JPEG_LOSSLESS_SV1,
    JPEG_SYNTAXES,
    JPEGLS_SYNTAXES,
    RLE,
    DecodedFrame,
    finish,
    j2k_output_photometric,
    jpeg_output_photometric,
)
from render.errors import DecodeError
from render.frameinfo import FrameInfo

try:
    import imagecodecs as _ic
except ImportError:  # optional codec: report unavailable, never crash start-up
    _ic = None  # type: ignore[assignment]


class ImagecodecsBackend:
    name = "imagecodecs"
    syntaxes = JPEG_SYNTAXES | JPEGLS_SYNTAXES | J2K_SYNTAXES | HTJ2K_SYNTAXES | {RLE}
    # imagecodecs' jpeg2k_decode has no reduce argument (checked on 2026.3.6); htj2k_decode has skipres.
    supports_reduce = HTJ2K_SYNTAXES

    def is_available(self) -> bool:
        return _ic is not None

    def decode(
        self, data: bytes | memoryview, info: FrameInfo, *, reduce: int = 0, threads: int = 1
    ) -> DecodedFrame:
        """Raises DecodeError with the library's message when the codestream is bad."""
        if _ic is None:
            raise DecodeError("imagecodecs is not installed")
        ts = info.transfer_syntax_uid
        data = cast(bytes, data)  # imagecodecs reads any buffer (memoryview included) without a copy
        try:
            if ts in HTJ2K_SYNTAXES:
                container = 8 * (1 if info.bits_allocated <= 8 else 2)
                if reduce and info.pixel_representation == 0 and info.bits_stored >= container:
                    reduce = 0  # see _unwrap_reduced: a full-range unsigned frame cannot be repaired
                # planar=False: without the colour transform OpenJPH hands back (samples, rows, cols)
                # by default (imagecodecs 2026.3.6); interleaved is what every other codec returns.
                arr = _ic.htj2k_decode(data, skipres=reduce or None, planar=False)
                if reduce:
                    arr = _unwrap_reduced(arr, info)
                return finish(arr, info, j2k_output_photometric(data, info.photometric_interpretation),
                              self.name, reduce)
            if ts in J2K_SYNTAXES:
                # OpenJPEG splits a frame's code-blocks over threads: 2 halve a 512x512 lossless decode.
                arr = _ic.jpeg2k_decode(data, numthreads=max(1, threads))
                return finish(arr, info, j2k_output_photometric(data, info.photometric_interpretation), self.name)
            if ts in JPEG_SYNTAXES:
                return finish(self._jpeg(data, ts), info, jpeg_output_photometric(info), self.name)
            if ts in JPEGLS_SYNTAXES:
                return finish(_ic.jpegls_decode(data), info, info.photometric_interpretation, self.name)
            if ts == RLE:
                return finish(self._rle(data, info), info, info.photometric_interpretation, self.name)
        except DecodeError:
            raise
        except Exception as exc:  # the library raises its own *Error types; keep the message
            raise DecodeError(f"imagecodecs: {type(exc).__name__}: {exc}") from exc
        raise DecodeError(f"imagecodecs: transfer syntax {ts} not handled")

    @staticmethod
    def _jpeg(data: Any, ts: str) -> np.ndarray:
        try:
            return _ic.jpeg8_decode(data)
        except Exception:
            if ts not in (JPEG_LOSSLESS, JPEG_LOSSLESS_SV1):
                raise
            # libjpeg-turbo rejects some lossless streams (e.g. odd predictors); liblj92 may not.
            return _ic.ljpeg_decode(data)

    @staticmethod
    def _rle(data: Any, info: FrameInfo) -> np.ndarray:
        # PS3.5 G: one segment per byte plane, most significant byte first, samples planar.
        nbytes = info.bits_allocated // 8
        dtype = f">u{nbytes}" if nbytes > 1 else "u1"
        flat = np.frombuffer(_ic.dicomrle_decode(data, dtype), dtype=dtype)
        rows, cols, spp = info.rows, info.columns, info.samples_per_pixel
        if flat.size < rows * cols * spp:
            raise DecodeError(f"imagecodecs: RLE frame decoded to {flat.size} samples, {rows * cols * spp} expected")
        arr = flat[: rows * cols * spp]
        if spp > 1:
            return arr.reshape(spp, rows, cols).transpose(1, 2, 0)
        return arr.reshape(rows, cols)


def _unwrap_reduced(arr: np.ndarray, info: FrameInfo) -> np.ndarray:
    """Repair OpenJPH's reduced-resolution output (imagecodecs 2026.3.6, measured): the low-pass band
    slightly over- and undershoots the sample range and is cast to the container type without
    clipping, so an unsigned 16-bit sample of -2 comes back as 65534. With BitsStored below the
    container width the signed view recovers the true value, which is then clipped to the range."""
    if arr.dtype.kind == "u":
        signed = arr.view(arr.dtype.str.replace("u", "i"))
        return np.clip(signed, 0, (1 << info.bits_stored) - 1).astype(arr.dtype)
    half = 1 << (info.bits_stored - 1)
    return np.clip(arr, -half, half - 1)
