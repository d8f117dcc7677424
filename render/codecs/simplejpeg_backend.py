"""simplejpeg backend: 8-bit JPEG baseline (1.2.840.10008.1.2.4.50) through libjpeg-turbo, the fastest
decoder for that syntax (FACTS.md); releases the GIL. Import guarded.
Must not handle 12-bit or lossless JPEG (simplejpeg cannot) nor convert colour itself.
"""

from __future__ import annotations

from render.codecs.base import JPEG_BASELINE, DecodedFrame, finish
from render.errors import DecodeError
from render.frameinfo import FrameInfo

try:
    import simplejpeg as _sj
except ImportError:
    _sj = None  # type: ignore[assignment]


class SimplejpegBackend:
    name = "simplejpeg"
    syntaxes = frozenset({JPEG_BASELINE})
    supports_reduce: frozenset[str] = frozenset()

    def is_available(self) -> bool:
        return _sj is not None

    def decode(
        self, data: bytes | memoryview, info: FrameInfo, *, reduce: int = 0, threads: int = 1
    ) -> DecodedFrame:
        """Raises DecodeError on a bad stream or a sample layout simplejpeg cannot give."""
        if _sj is None:
            raise DecodeError("simplejpeg is not installed")
        if info.bits_allocated != 8 or info.samples_per_pixel not in (1, 3):
            raise DecodeError("simplejpeg: only 8-bit greyscale or 3-sample JPEG baseline")
        colour = info.samples_per_pixel == 3
        try:
            # fastupsample off: libjpeg's fancy upsampling, as pydicom's decoders use.
            arr = _sj.decode_jpeg(bytes(data), colorspace="RGB" if colour else "GRAY", fastdct=False,
                                  fastupsample=False)
        except Exception as exc:
            raise DecodeError(f"simplejpeg: {type(exc).__name__}: {exc}") from exc
        return finish(arr, info, "RGB" if colour else info.photometric_interpretation, self.name)
