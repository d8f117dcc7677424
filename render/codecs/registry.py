"""Codec registry: which backends are live and which one decodes a transfer syntax.

The default order per syntax is fastest-first from the FACTS.md measurements (re-checked by
``bench/codec_floor.py``); callers override it with ``preferences`` (from Settings). Must not decode
anything itself or hold mutable global configuration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from render.codecs import base
from render.codecs.base import Backend, DecodedFrame
from render.codecs.imagecodecs_backend import ImagecodecsBackend
from render.codecs.native import NativeBackend
from render.codecs.pylibjpeg_backend import LibjpegBackend, OpenJpegBackend, RleBackend
from render.codecs.simplejpeg_backend import SimplejpegBackend
from render.errors import UnsupportedTransferSyntax
from render.frameinfo import FrameInfo

BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        NativeBackend(),
        ImagecodecsBackend(),
        SimplejpegBackend(),
        OpenJpegBackend(),
        LibjpegBackend(),
        RleBackend(),
    )
}

_NATIVE = ["native"]
_JPEG = ["imagecodecs", "pylibjpeg-libjpeg"]
_J2K = ["imagecodecs", "pylibjpeg-openjpeg"]
#: Fastest first (FACTS.md, one 512x512 16-bit CT frame). Backends that release the GIL win ties.
DEFAULT_PREFERENCES: dict[str, list[str]] = {
    base.IMPLICIT_LE: _NATIVE,
    base.EXPLICIT_LE: _NATIVE,
    base.EXPLICIT_BE: _NATIVE,
    base.DEFLATED_LE: _NATIVE,
    base.RLE: ["imagecodecs", "pylibjpeg-rle"],  # a tie (0.22 ms); imagecodecs releases the GIL
    base.JPEG_BASELINE: ["simplejpeg", "imagecodecs", "pylibjpeg-libjpeg"],
    base.JPEG_EXTENDED: _JPEG,
    base.JPEG_LOSSLESS: _JPEG,
    base.JPEG_LOSSLESS_SV1: _JPEG,
    base.JPEGLS_LOSSLESS: _JPEG,
    base.JPEGLS_NEAR: _JPEG,
    base.J2K_LOSSLESS: _J2K,
    base.J2K: _J2K,
    base.HTJ2K_LOSSLESS: _J2K,
    base.HTJ2K_RPCL: _J2K,
    base.HTJ2K: _J2K,
}


def available_backends() -> dict[str, bool]:
    """Name -> whether its library imported. For /healthz and start-up logging."""
    return {name: b.is_available() for name, b in BACKENDS.items()}


def candidates(ts_uid: str, preferences: Mapping[str, Sequence[str]] | None = None) -> list[Backend]:
    """Live backends for ``ts_uid`` in preference order.

    Raises UnsupportedTransferSyntax when the syntax is not one Tessera renders (PS3.5 Annex A) or no
    backend for it is installed.
    """
    if ts_uid not in base.ALL_SYNTAXES:
        raise UnsupportedTransferSyntax(
            f"transfer syntax {ts_uid!r} is not supported for decoding; supported: "
            + ", ".join(sorted(base.ALL_SYNTAXES))
        )
    order = list((preferences or {}).get(ts_uid) or DEFAULT_PREFERENCES[ts_uid])
    out: list[Backend] = []
    for name in order:
        backend = BACKENDS.get(name)
        if backend is not None and ts_uid in backend.syntaxes and backend.is_available():
            out.append(backend)
    if not out:
        raise UnsupportedTransferSyntax(
            f"transfer syntax {ts_uid} has no live decoder among {order}; live backends: "
            + ", ".join(n for n, ok in available_backends().items() if ok)
        )
    return out


def select_backend(ts_uid: str, preferences: Mapping[str, Sequence[str]] | None = None) -> Backend:
    """The first live backend for ``ts_uid``. Raises UnsupportedTransferSyntax."""
    return candidates(ts_uid, preferences)[0]


def decode(
    data: bytes | memoryview,
    info: FrameInfo,
    *,
    reduce: int = 0,
    preferences: Mapping[str, Sequence[str]] | None = None,
    threads: int = 1,
) -> DecodedFrame:
    """Decode one frame with the preferred live backend.

    ``reduce=k`` asks for 1/2^k resolution; backends that cannot do it decode at full size, and
    ``DecodedFrame.reduce`` says what was produced. ``threads`` is how many threads this one frame
    may use. Raises UnsupportedTransferSyntax or DecodeError.
    """
    backend = select_backend(info.transfer_syntax_uid, preferences)
    k = reduce if info.transfer_syntax_uid in backend.supports_reduce else 0
    return backend.decode(data, info, reduce=k, threads=threads)
