"""The plain numpy oracle of the rendering arithmetic; ``render.kernels`` must equal it byte for byte.

Implements, on a decoded frame: BitsStored masking and sign extension (PS3.3 C.7.6.3.1.4), the
modality transform (rescale or Modality LUT Sequence, PS3.3 C.11.1), VOI (LINEAR, LINEAR_EXACT,
SIGMOID windows or VOI LUT Sequence, PS3.3 C.11.2), MONOCHROME1 inversion after VOI, palette colour
(C.7.6.3.1.5), YBR_FULL/YBR_FULL_422 to RGB (C.7.6.3.1.2), and the viewport (PS3.18 8.3.5.1.3):
crop, flip, area-average when shrinking and nearest neighbour when enlarging, into uint8.

The fixed-point contract it shares with the kernels is described in ``render.kernels``. Slow on
purpose (clarity first); never used on the request path. Must not do I/O or decode.
"""

from __future__ import annotations

import numpy as np

from render.codecs.base import DecodedFrame
from render.frameinfo import FrameInfo
from render.lutinfo import prepared
from render.params import RenderParams
from render.transform import LINEAR, LINEAR_EXACT, GreyTransform, Region, resolve_grey, resolve_region

_FIX = 65536.0


def stored_values(arr: np.ndarray, mask: int, signed: bool) -> np.ndarray:
    """Keep BitsStored bits and sign-extend two's complement values (PS3.5 8.1.1)."""
    s = arr.astype(np.int64) & mask
    if signed:
        s = np.where(s > (mask >> 1), s - (mask + 1), s)
    return s


def _lookup(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    return table[np.clip(index, 0, table.shape[0] - 1)]


def modality(arr: np.ndarray, t: GreyTransform) -> np.ndarray:
    """Modality LUT output as float64 (PS3.3 C.11.1): LUT when present, else slope * x + intercept."""
    s = stored_values(arr, t.mask, t.signed)
    if t.use_mlut:
        return _lookup(t.mlut, s - t.mfirst).astype(np.float64)
    return s * t.slope + t.intercept


def voi(x: np.ndarray, t: GreyTransform) -> np.ndarray:
    """VOI output in [0, 255] (PS3.3 C.11.2.1.2 LINEAR, C.11.2.1.3 LINEAR_EXACT / SIGMOID, VOI LUT)."""
    c, w = t.center, t.width
    if t.use_vlut:
        return _lookup(t.vlut, np.floor(x).astype(np.int64) - t.vfirst) * t.vscale
    with np.errstate(divide="ignore", invalid="ignore"):
        if t.function == LINEAR:
            mid = ((x - (c - 0.5)) / (w - 1.0) + 0.5) * 255.0
            return np.where(x <= c - 0.5 - (w - 1.0) / 2.0, 0.0, np.where(x > c - 0.5 + (w - 1.0) / 2.0, 255.0, mid))
        if t.function == LINEAR_EXACT:
            mid = ((x - c) / w + 0.5) * 255.0
            return np.where(x <= c - w / 2.0, 0.0, np.where(x > c + w / 2.0, 255.0, mid))
        return 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))


def grey_display(arr: np.ndarray, t: GreyTransform) -> np.ndarray:
    """Per-pixel display value y in [0, 255] (float64), MONOCHROME1 inverted after VOI."""
    y = voi(modality(arr, t), t)
    return 255.0 - y if t.invert else y


def fixed_point(y: np.ndarray) -> np.ndarray:
    return (y * _FIX + 0.5).astype(np.int64)


def spans(n_src: int, n_out: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per output index, the source [start, end): the area box when shrinking, the pixel under the
    centre when enlarging; reversed for a flipped axis."""
    i = np.arange(n_out, dtype=np.int64)
    if flip:
        i = n_out - 1 - i
    if n_src >= n_out:
        return (i * n_src) // n_out, ((i + 1) * n_src) // n_out
    k = ((2 * i + 1) * n_src) // (2 * n_out)
    return k, k + 1


def area_resize(q: np.ndarray, region: Region) -> np.ndarray:
    """Box-average fixed-point values ``q`` (rows, cols[, ch]) over ``region`` into uint8."""
    q = q[region.y0 : region.y0 + region.h, region.x0 : region.x0 + region.w]
    if q.ndim == 2:
        q = q[:, :, None]
    integral = np.zeros((q.shape[0] + 1, q.shape[1] + 1, q.shape[2]), np.int64)
    integral[1:, 1:] = q.cumsum(axis=0).cumsum(axis=1)
    r0, r1 = spans(region.h, region.out_h, region.flip_y)
    c0, c1 = spans(region.w, region.out_w, region.flip_x)
    r0, r1, c0, c1 = r0[:, None], r1[:, None], c0[None, :], c1[None, :]
    total = integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]
    n = ((r1 - r0) * (c1 - c0))[:, :, None]
    out = ((total + n * 32768) // (n * 65536)).astype(np.uint8)
    return out[:, :, 0] if out.shape[2] == 1 else out


def ybr_full_to_rgb(arr: np.ndarray, mask: int = 255) -> np.ndarray:
    """YBR_FULL -> RGB float64 in [0, 255] (PS3.3 C.7.6.3.1.2)."""
    ybr = arr.astype(np.int64) & mask
    y = ybr[..., 0].astype(np.float64)
    cb = ybr[..., 1].astype(np.float64) - 128.0
    cr = ybr[..., 2].astype(np.float64) - 128.0
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    return np.clip(rgb, 0.0, 255.0)


def colour_display(decoded: DecodedFrame, info: FrameInfo) -> np.ndarray:
    """RGB display values (rows, cols, 3) float64 in [0, 255] for colour or palette frames."""
    mask = (1 << info.bits_stored) - 1
    arr = decoded.array
    if info.photometric_interpretation == "PALETTE COLOR":
        pal = prepared(info).palette
        assert pal is not None
        idx = (arr.astype(np.int64) & mask) - pal.first
        scale = 1.0 / 256.0 if pal.bits > 8 else 1.0
        return np.minimum(_lookup(pal.data, idx) * scale, 255.0)
    if decoded.photometric in ("YBR_FULL", "YBR_FULL_422"):
        return ybr_full_to_rgb(arr, mask)
    return (arr.astype(np.int64) & mask) * colour_scale(info.bits_stored)


def colour_scale(bits_stored: int) -> float:
    return 1.0 if bits_stored <= 8 else 255.0 / ((1 << bits_stored) - 1)


def numpy_minmax(arr: np.ndarray) -> object:
    def minmax(t: GreyTransform) -> tuple[float, float]:
        x = modality(arr, t)
        return float(x.min()), float(x.max())

    return minmax


def render_reference(decoded: DecodedFrame, info: FrameInfo, frame_index: int, params: RenderParams) -> np.ndarray:
    """uint8 pixels (rows, cols) grey or (rows, cols, 3) RGB for one decoded frame.

    Raises InvalidRenderParameter when the viewport region is outside the frame.
    """
    scale = 1 << decoded.reduce
    region = resolve_region(info.rows, info.columns, params.viewport, scale)
    if info.is_color:
        return area_resize(fixed_point(colour_display(decoded, info)), region)
    t = resolve_grey(info, frame_index, params.window, numpy_minmax(decoded.array))  # type: ignore[arg-type]
    return area_resize(fixed_point(grey_display(decoded.array, t)), region)
