"""pylibjpeg plugins: pylibjpeg-openjpeg (JPEG 2000, HTJ2K), pylibjpeg-libjpeg (JPEG, JPEG-LS) and
pylibjpeg-rle (RLE), one backend each so preferences can name them separately.

They hold the GIL for the whole decode (FACTS.md), so the registry prefers imagecodecs when it is
live. Imports are guarded per plugin. Must not mask, rescale or convert colour.
"""

from __future__ import annotations

import numpy as np

from render.codecs.base import (
    HTJ2K_SYNTAXES,
    J2K_SYNTAXES,
    JPEG_BASELINE,
    JPEG_EXTENDED,
    JPEG_SYNTAXES,
    JPEGLS_SYNTAXES,
    RLE,
    DecodedFrame,
    finish,
    j2k_output_photometric,
)
from render.errors import DecodeError
from render.frameinfo import FrameInfo

try:
    import openjpeg as _openjpeg
except ImportError:
    _openjpeg = None  # type: ignore[assignment]
try:
    import libjpeg as _libjpeg
except ImportError:
    _libjpeg = None  # type: ignore[assignment]
try:
    from rle.utils import decode_frame as _rle_decode_frame
except ImportError:
    _rle_decode_frame = None


def _wrap(name: str, exc: Exception) -> DecodeError:
    return DecodeError(f"{name}: {type(exc).__name__}: {exc}")


class OpenJpegBackend:
    name = "pylibjpeg-openjpeg"
    syntaxes = J2K_SYNTAXES | HTJ2K_SYNTAXES
    supports_reduce: frozenset[str] = frozenset()  # 2.6 has no reduced-resolution decode

    def is_available(self) -> bool:
        return _openjpeg is not None

    def decode(
        self, data: bytes | memoryview, info: FrameInfo, *, reduce: int = 0, threads: int = 1
    ) -> DecodedFrame:
        """Raises DecodeError on a bad codestream."""
        if _openjpeg is None:
            raise DecodeError("pylibjpeg-openjpeg is not installed")
        try:
            arr = _openjpeg.decode(bytes(data))
        except Exception as exc:
            raise _wrap(self.name, exc) from exc
        return finish(arr, info, j2k_output_photometric(data, info.photometric_interpretation), self.name)


class LibjpegBackend:
    name = "pylibjpeg-libjpeg"
    syntaxes = JPEG_SYNTAXES | JPEGLS_SYNTAXES
    supports_reduce: frozenset[str] = frozenset()

    def is_available(self) -> bool:
        return _libjpeg is not None

    def decode(
        self, data: bytes | memoryview, info: FrameInfo, *, reduce: int = 0, threads: int = 1
    ) -> DecodedFrame:
        """Raises DecodeError on a bad codestream (e.g. error -1038 on some 12-bit NEMA samples)."""
        if _libjpeg is None:
            raise DecodeError("pylibjpeg-libjpeg is not installed")
        try:
            # For 3-sample lossy JPEG ask libjpeg for YCbCr->RGB (colour_transform=1) so the output
            # matches what libjpeg-turbo gives; lossless and JPEG-LS samples are left as stored.
            lossy_colour = info.samples_per_pixel == 3 and info.transfer_syntax_uid in (
                JPEG_BASELINE, JPEG_EXTENDED)
            arr = _libjpeg.decode(bytes(data), colour_transform=1 if lossy_colour else 0)
        except Exception as exc:
            raise _wrap(self.name, exc) from exc
        if info.transfer_syntax_uid in JPEGLS_SYNTAXES:
            return finish(arr, info, info.photometric_interpretation, self.name)
        return finish(arr, info, "RGB" if lossy_colour else info.photometric_interpretation, self.name)


class RleBackend:
    name = "pylibjpeg-rle"
    syntaxes = frozenset({RLE})
    supports_reduce: frozenset[str] = frozenset()

    def is_available(self) -> bool:
        return _rle_decode_frame is not None

    def decode(
        self, data: bytes | memoryview, info: FrameInfo, *, reduce: int = 0, threads: int = 1
    ) -> DecodedFrame:
        """Raises DecodeError on a bad RLE frame (PS3.5 Annex G)."""
        if _rle_decode_frame is None:
            raise DecodeError("pylibjpeg-rle is not installed")
        rows, cols, spp, ba = info.rows, info.columns, info.samples_per_pixel, info.bits_allocated
        try:
            raw = _rle_decode_frame(bytes(data), rows * cols, ba, "<")
        except Exception as exc:
            raise _wrap(self.name, exc) from exc
        nbytes = ba // 8
        flat = np.frombuffer(raw, dtype=f"<u{nbytes}" if nbytes > 1 else "u1")
        if flat.size < rows * cols * spp:
            raise DecodeError(f"{self.name}: decoded {flat.size} samples, {rows * cols * spp} expected")
        arr = flat[: rows * cols * spp]
        # Segments are per sample, so the output is colour-by-plane.
        arr = arr.reshape(spp, rows, cols).transpose(1, 2, 0) if spp > 1 else arr.reshape(rows, cols)
        return finish(arr, info, info.photometric_interpretation, self.name)
