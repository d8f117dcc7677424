"""Resolve request parameters and FrameInfo into the concrete numbers the kernels and the reference
both consume: which modality transform, which VOI (window or LUT) with which function, whether to
invert, which source region, output size and flips.

Shared by ``kernels`` (via ``pipeline``) and ``reference`` so the two differ only in arithmetic
implementation, which the tests compare exactly. Must not touch pixel values except through the
min-max callback, and must not do I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from render.errors import InvalidRenderParameter
from render.frameinfo import FrameInfo
from render.lutinfo import Lut, prepared
from render.params import Viewport, Window

LINEAR, LINEAR_EXACT, SIGMOID = 0, 1, 2
FUNCTION_CODES = {"LINEAR": LINEAR, "LINEAR_EXACT": LINEAR_EXACT, "SIGMOID": SIGMOID}
_EMPTY = np.zeros(1, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class GreyTransform:
    """Stored value -> display value in [0, 255] (PS3.3 C.11.1 modality, C.11.2 VOI, C.7.6.3.1.2
    MONOCHROME1 inversion). Exactly one of (slope, intercept) / ``mlut`` is used, and one of the window
    / ``vlut``."""

    mask: int
    signed: bool
    slope: float
    intercept: float
    mlut: np.ndarray
    mfirst: int
    use_mlut: bool
    center: float
    width: float
    function: int
    vlut: np.ndarray
    vfirst: int
    vscale: float
    use_vlut: bool
    invert: bool


@dataclass(frozen=True, slots=True)
class Region:
    """Source rectangle (in decoded-array pixels), output size and flips (PS3.18 8.3.5.1.3)."""

    y0: int
    x0: int
    h: int
    w: int
    out_h: int
    out_w: int
    flip_y: bool
    flip_x: bool


def frame_values(info: FrameInfo, frame_index: int) -> tuple[float, float, tuple[tuple[float, float], ...], str]:
    """Rescale slope/intercept, windows and VOI function for one frame: per-frame functional groups
    (PS3.3 C.7.6.16.2.9/.10) override the instance-level values."""
    slope, intercept = info.rescale_slope, info.rescale_intercept
    windows = tuple((w.center, w.width) for w in info.windows)
    function = info.voi_lut_function
    frames = prepared(info).frames
    if 0 <= frame_index < len(frames):
        entry = frames[frame_index]
        slope = float(entry.get("slope", slope))
        intercept = float(entry.get("intercept", intercept))
        if entry.get("windows"):
            windows = tuple((float(c), float(w)) for c, w in entry["windows"])
        function = str(entry.get("function", function))
    return slope, intercept, windows, function


def _valid_stored_window(width: float, function: str) -> bool:
    # PS3.3 C.11.2.1.2.1: LINEAR needs width >= 1; LINEAR_EXACT / SIGMOID need width > 0.
    return width >= 1 if function == "LINEAR" else width > 0


def resolve_grey(
    info: FrameInfo,
    frame_index: int,
    window: Window | None,
    minmax: Callable[[GreyTransform], tuple[float, float]],
) -> GreyTransform:
    """Pick the grey transform for one frame.

    VOI precedence: the requested window; else the frame's first valid stored window (a stored width
    the standard forbids, e.g. 0 for LINEAR, is skipped); else the first VOI LUT; else the min-max of
    the modality output (``minmax`` is called with the modality-only transform) as a LINEAR_EXACT
    window spanning [min, max]. MONOCHROME1 is inverted after VOI (PS3.3 C.7.6.3.1.2).
    """
    luts = prepared(info)
    slope, intercept, windows, function = frame_values(info, frame_index)
    if function not in FUNCTION_CODES:
        function = "LINEAR"  # PS3.3 C.11.2.1.3: unknown defined terms fall back to LINEAR
    mlut: Lut | None = luts.modality_lut
    base = GreyTransform(
        mask=(1 << info.bits_stored) - 1,
        signed=info.pixel_representation == 1,
        slope=slope,
        intercept=intercept,
        mlut=mlut.data if mlut else _EMPTY,
        mfirst=mlut.first if mlut else 0,
        use_mlut=mlut is not None,
        center=0.0,
        width=1.0,
        function=LINEAR,
        vlut=_EMPTY,
        vfirst=0,
        vscale=0.0,
        use_vlut=False,
        invert=info.photometric_interpretation == "MONOCHROME1",
    )
    if window is not None:
        return _with_window(base, window.center, window.width, FUNCTION_CODES[window.function])
    for c, w in windows:
        if _valid_stored_window(w, function):
            return _with_window(base, c, w, FUNCTION_CODES[function])
    if luts.voi_luts:
        v = luts.voi_luts[0]
        return replace(base, vlut=v.data, vfirst=v.first, vscale=255.0 / ((1 << v.bits) - 1), use_vlut=True)
    lo, hi = minmax(base)
    return _with_window(base, (lo + hi) / 2.0, hi - lo, LINEAR_EXACT) if hi > lo else _with_window(
        base, lo, 1.0, LINEAR_EXACT)


def _with_window(base: GreyTransform, center: float, width: float, function: int) -> GreyTransform:
    return replace(base, center=float(center), width=float(width), function=function)


def resolve_region(rows: int, cols: int, viewport: Viewport | None, scale: int = 1) -> Region:
    """Source region and output size for a frame of ``rows`` x ``cols`` full-resolution pixels.

    The region (sx, sy, |sw|, |sh|; defaults: the rest of the image) is scaled to fit inside vw x vh
    keeping its aspect ratio (the output is the fitted size, not padded to the viewport); negative
    sw/sh flip. ``scale`` (2^reduce) maps the region onto a reduced-resolution decode.
    Raises InvalidRenderParameter when the region lies outside the frame.
    """
    if viewport is None:
        h, w = -(-rows // scale), -(-cols // scale)
        return Region(0, 0, h, w, h, w, False, False)
    sx, sy = viewport.sx, viewport.sy
    if sx >= cols or sy >= rows:
        raise InvalidRenderParameter(
            f"viewport: sx,sy {sx},{sy} is outside the {cols}x{rows} frame (must be < columns, rows)")
    sw = viewport.sw if viewport.sw is not None else cols - sx
    sh = viewport.sh if viewport.sh is not None else rows - sy
    flip_x, flip_y = sw < 0, sh < 0
    w = min(abs(sw), cols - sx)
    h = min(abs(sh), rows - sy)
    fit = min(viewport.vw / w, viewport.vh / h)
    out_w = max(1, min(viewport.vw, math.floor(w * fit + 0.5)))
    out_h = max(1, min(viewport.vh, math.floor(h * fit + 0.5)))
    if scale > 1:
        x1, y1 = -(-(sx + w) // scale), -(-(sy + h) // scale)
        sx, sy = sx // scale, sy // scale
        w, h = max(1, x1 - sx), max(1, y1 - sy)
    return Region(sy, sx, h, w, out_h, out_w, flip_y, flip_x)


def reduce_levels(region: Region, max_levels: int = 5) -> int:
    """How many resolution levels a wavelet decoder may drop: the largest k with 2^k <= the shrink
    factor on both axes (so area averaging still does the last, fractional step)."""
    factor = min(region.h / region.out_h, region.w / region.out_w)
    k = 0
    while k < max_levels and (1 << (k + 1)) <= factor:
        k += 1
    return k
