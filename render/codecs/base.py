"""Shared types of the codec plugins: what a backend is and what it hands back.

Responsible for the ``DecodedFrame`` contract and the small helpers every backend uses to honour it.
Must not choose backends (that is ``render.codecs.registry``) nor touch pixel values beyond reshaping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from render.errors import DecodeError
from render.frameinfo import FrameInfo

# Transfer syntax UIDs (PS3.5 Section 10 and Annex A.4).
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
RLE = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEGLS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEGLS_NEAR = "1.2.840.10008.1.2.4.81"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
J2K = "1.2.840.10008.1.2.4.91"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"

NATIVE_SYNTAXES = frozenset({IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE, DEFLATED_LE})
JPEG_SYNTAXES = frozenset({JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1})
JPEGLS_SYNTAXES = frozenset({JPEGLS_LOSSLESS, JPEGLS_NEAR})
J2K_SYNTAXES = frozenset({J2K_LOSSLESS, J2K})
HTJ2K_SYNTAXES = frozenset({HTJ2K_LOSSLESS, HTJ2K_RPCL, HTJ2K})
ALL_SYNTAXES = NATIVE_SYNTAXES | {RLE} | JPEG_SYNTAXES | JPEGLS_SYNTAXES | J2K_SYNTAXES | HTJ2K_SYNTAXES
#: Syntaxes whose decoded pixels must equal the encoder's input (used by the cross-backend tests).
LOSSLESS_SYNTAXES = NATIVE_SYNTAXES | {RLE, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1, JPEGLS_LOSSLESS, J2K_LOSSLESS,
                                       HTJ2K_LOSSLESS, HTJ2K_RPCL}


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """What a backend actually produced.

    ``array`` is C-contiguous, native byte order, shape (rows, cols) or (rows, cols, samples), holding
    the stored bits (masking and sign extension are the kernel's job). ``photometric`` is the colour
    space of ``array`` (e.g. RGB after libjpeg-turbo or OpenJPEG applied the inverse colour transform),
    which may differ from ``FrameInfo.photometric_interpretation``. ``reduce`` is the number of
    resolution levels actually dropped (each halves rows and columns, rounding up).
    """

    array: np.ndarray
    photometric: str
    reduce: int = 0
    backend: str = ""


class Backend(Protocol):
    """A codec plugin: a name, the syntaxes it decodes, whether its library imported, and decode."""

    name: str
    syntaxes: frozenset[str]
    supports_reduce: frozenset[str]

    def is_available(self) -> bool: ...

    def decode(
        self, data: bytes | memoryview, info: FrameInfo, *, reduce: int = 0, threads: int = 1
    ) -> DecodedFrame:
        """``threads``: how many threads this one frame's decode may use (a codec that cannot split
        a frame ignores it)."""


def finish(
    arr: np.ndarray, info: FrameInfo, photometric: str, backend: str, reduce: int = 0
) -> DecodedFrame:
    """Check the shape a codec produced against FrameInfo and return a contiguous DecodedFrame.

    Raises DecodeError when the codestream does not describe the frame FrameInfo promises.
    """
    rows = -(-info.rows // (1 << reduce))
    cols = -(-info.columns // (1 << reduce))
    samples = info.samples_per_pixel
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    want = (rows, cols) if samples == 1 else (rows, cols, samples)
    if arr.shape != want:
        raise DecodeError(f"{backend}: decoded shape {arr.shape} does not match the expected {want}")
    if arr.dtype.kind not in "ui":
        raise DecodeError(f"{backend}: decoded dtype {arr.dtype} is not an integer type")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return DecodedFrame(np.ascontiguousarray(arr), photometric, reduce, backend)


def j2k_output_photometric(data: bytes | memoryview, declared: str) -> str:
    """Colour space OpenJPEG/OpenJPH produce: RGB when the codestream's COD marker enables the
    multiple component transform (ICT/RCT, PS3.5 8.2.4), else the declared interpretation."""
    head = bytes(data[:4096])
    i = head.find(b"\xff\x52")  # COD: Lcod(2) Scod(1) progression(1) layers(2) MCT(1)
    if i >= 0 and i + 8 < len(head) and head[i + 8] == 1:
        return "RGB"
    return declared


def jpeg_output_photometric(info: FrameInfo) -> str:
    """libjpeg(-turbo) converts 3-component YCbCr to RGB; greyscale stays as declared."""
    return "RGB" if info.samples_per_pixel == 3 else info.photometric_interpretation
