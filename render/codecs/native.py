"""Native (uncompressed) pixel data: little/big endian, deflated (handed over inflated), BitsAllocated
1, 8, 16, 32, planar configuration 1 and the subsampled YBR_FULL_422 layout (PS3.5 8.1, 8.2.1; PS3.3
C.7.6.3.1.2). Turns one frame's bytes into an array without copying when the layout allows.
Must not mask, rescale or convert colour (the kernels do); must not read a Dataset.
"""

from __future__ import annotations

import numpy as np

from render.codecs.base import EXPLICIT_BE, NATIVE_SYNTAXES, DecodedFrame, finish
from render.errors import DecodeError
from render.frameinfo import FrameInfo
from render.lutinfo import prepared


class NativeBackend:
    name = "native"
    syntaxes = NATIVE_SYNTAXES
    supports_reduce: frozenset[str] = frozenset()

    def is_available(self) -> bool:
        return True

    def decode(
        self, data: bytes | memoryview, info: FrameInfo, *, reduce: int = 0, threads: int = 1
    ) -> DecodedFrame:
        """Raises DecodeError when the frame is shorter than FrameInfo says (truncated file)."""
        rows, cols, spp, ba = info.rows, info.columns, info.samples_per_pixel, info.bits_allocated
        buf = memoryview(data).cast("B")
        if info.photometric_interpretation == "YBR_FULL_422" and spp == 3 and ba == 8:
            return self._ybr422(buf, info)
        need = info.frame_length
        if len(buf) < need:
            raise DecodeError(f"native: frame has {len(buf)} bytes, {need} expected for {rows}x{cols}x{spp}x{ba}")
        if ba == 1:
            bits = np.unpackbits(np.frombuffer(buf[:need], np.uint8), bitorder="little")
            arr = bits[: rows * cols * spp]
        elif ba in (8, 16, 32):
            order = ">" if info.transfer_syntax_uid == EXPLICIT_BE else "<"
            arr = np.frombuffer(buf[:need], dtype=f"{order}u{ba // 8}")
            if ba == 8 and prepared(info).swap_ow_bytes and arr.size % 2 == 0:
                # 8-bit data in an OW element of a big endian file: each 16-bit word is byte swapped.
                arr = arr.reshape(-1, 2)[:, ::-1].reshape(-1)
        else:
            raise DecodeError(f"native: BitsAllocated {ba} is not supported (1, 8, 16 or 32)")
        if spp == 1:
            arr = arr.reshape(rows, cols)
        elif info.planar_configuration == 1:
            arr = arr.reshape(spp, rows, cols).transpose(1, 2, 0)
        else:
            arr = arr.reshape(rows, cols, spp)
        return finish(arr, info, info.photometric_interpretation, self.name)

    def _ybr422(self, buf: memoryview, info: FrameInfo) -> DecodedFrame:
        # PS3.3 C.7.6.3.1.2: pairs of pixels stored as Y1 Y2 Cb Cr; chroma is shared by the pair.
        rows, cols = info.rows, info.columns
        need = rows * ((cols + 1) // 2) * 4
        if len(buf) < need:
            raise DecodeError(f"native: YBR_FULL_422 frame has {len(buf)} bytes, {need} expected")
        quads = np.frombuffer(buf[:need], np.uint8).reshape(rows, (cols + 1) // 2, 4)
        out = np.empty((rows, (cols + 1) // 2 * 2, 3), np.uint8)
        out[:, 0::2, 0] = quads[:, :, 0]
        out[:, 1::2, 0] = quads[:, :, 1]
        out[:, 0::2, 1] = quads[:, :, 2]
        out[:, 1::2, 1] = quads[:, :, 2]
        out[:, 0::2, 2] = quads[:, :, 3]
        out[:, 1::2, 2] = quads[:, :, 3]
        return finish(out[:, :cols], info, "YBR_FULL", self.name)
