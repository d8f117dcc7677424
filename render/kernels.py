"""Numba kernels: fused stored value -> uint8 display pixels, written into a caller-provided array.

One pass per output pixel does BitsStored masking and sign extension, the modality transform
(rescale or Modality LUT), VOI (LINEAR, LINEAR_EXACT, SIGMOID window or VOI LUT), MONOCHROME1
inversion, region crop, flip and area-average resize (nearest when enlarging). Colour kernels do the
same geometry for RGB, YBR_FULL (converted to RGB) and palette colour.

Arithmetic contract, shared with ``render.reference`` which must produce identical bytes: each
source pixel becomes a display value y in [0, 255] (float64), then a 16.16 fixed-point integer
q = floor(y * 65536 + 0.5); an output pixel is (sum q + n * 32768) // (n * 65536) over its box of n
source pixels. Integer sums make the result independent of summation order.

Only numba and numpy here; no Python objects, no I/O. All functions are ``nogil`` so the render
thread pool runs them in parallel. ``warm_up()`` compiles (or loads from the cache) every signature
the server uses, before it reports ready.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_FIX = 65536.0
_HALF = 32768


@njit(cache=True, nogil=True)
def _span(i: int, n_src: int, n_out: int) -> tuple[int, int]:
    # Shrinking: the box of source pixels that fall in output pixel i (area average).
    # Enlarging: the one source pixel under the centre of output pixel i (nearest neighbour).
    if n_src >= n_out:
        return (i * n_src) // n_out, ((i + 1) * n_src) // n_out
    k = ((2 * i + 1) * n_src) // (2 * n_out)
    return k, k + 1


@njit(cache=True, nogil=True)
def _column_spans(ow, w, x0, flip_x):  # pragma: no cover
    """First and one-past-last source column of each output column (area average when shrinking)."""
    c0s = np.empty(ow, np.int64)
    c1s = np.empty(ow, np.int64)
    for j in range(ow):
        jj = ow - 1 - j if flip_x else j
        a, b = _span(jj, w, ow)
        c0s[j] = x0 + a
        c1s[j] = x0 + b
    return c0s, c1s


@njit(cache=True, nogil=True)
def _grey_y(raw, mask, signed, slope, intercept, mlut, mfirst, use_mlut,
            center, width, function, vlut, vfirst, vscale, use_vlut, invert):  # pragma: no cover
    s = np.int64(raw) & mask
    if signed and s > (mask >> 1):
        s -= mask + 1
    # Modality transform, PS3.3 C.11.1
    if use_mlut:
        k = s - mfirst
        if k < 0:
            k = 0
        elif k >= mlut.shape[0]:
            k = mlut.shape[0] - 1
        x = float(mlut[k])
    else:
        x = s * slope + intercept
    # VOI, PS3.3 C.11.2.1.2 / C.11.2.1.3
    if use_vlut:
        k = np.int64(math.floor(x)) - vfirst
        if k < 0:
            k = 0
        elif k >= vlut.shape[0]:
            k = vlut.shape[0] - 1
        y = vlut[k] * vscale
    elif function == 0:  # LINEAR
        if x <= center - 0.5 - (width - 1.0) / 2.0:
            y = 0.0
        elif x > center - 0.5 + (width - 1.0) / 2.0:
            y = 255.0
        else:
            y = ((x - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0
    elif function == 1:  # LINEAR_EXACT
        if x <= center - width / 2.0:
            y = 0.0
        elif x > center + width / 2.0:
            y = 255.0
        else:
            y = ((x - center) / width + 0.5) * 255.0
    else:  # SIGMOID
        y = 255.0 / (1.0 + math.exp(-4.0 * (x - center) / width))
    if invert:
        y = 255.0 - y
    return np.int64(y * _FIX + 0.5)


@njit(cache=True, nogil=True)
def render_grey(src, out, mask, signed, slope, intercept, mlut, mfirst, use_mlut,
                center, width, function, vlut, vfirst, vscale, use_vlut, invert,
                y0, x0, h, w, flip_y, flip_x):  # pragma: no cover
    """src (rows, cols) integer -> out (out_h, out_w) uint8 for the region (y0, x0, h, w).

    When the region has at least twice as many pixels as there are stored values (2^BitsStored), the
    per-value chain is evaluated once per value into a table first: same function, same results,
    about 1 ns per pixel instead of 7.
    """
    oh, ow = out.shape
    use_table = 2 * (mask + 1) <= h * w
    table = np.empty(mask + 1 if use_table else 1, np.int64)
    if use_table:
        for v in range(mask + 1):
            table[v] = _grey_y(v, mask, signed, slope, intercept, mlut, mfirst, use_mlut,
                               center, width, function, vlut, vfirst, vscale, use_vlut, invert)
    if oh == h and ow == w:
        # Same size: one source pixel per output pixel; the box division becomes a shift.
        for i in range(oh):
            r = y0 + (oh - 1 - i if flip_y else i)
            for j in range(ow):
                c = x0 + (ow - 1 - j if flip_x else j)
                if use_table:
                    q = table[np.int64(src[r, c]) & mask]
                else:
                    q = _grey_y(src[r, c], mask, signed, slope, intercept, mlut, mfirst, use_mlut,
                                center, width, function, vlut, vfirst, vscale, use_vlut, invert)
                out[i, j] = (q + _HALF) >> 16
        return
    c0s, c1s = _column_spans(ow, w, x0, flip_x)
    for i in range(oh):
        ii = oh - 1 - i if flip_y else i
        r0, r1 = _span(ii, h, oh)
        r0 += y0
        r1 += y0
        for j in range(ow):
            acc = np.int64(0)
            for r in range(r0, r1):
                for c in range(c0s[j], c1s[j]):
                    if use_table:
                        acc += table[np.int64(src[r, c]) & mask]
                    else:
                        acc += _grey_y(src[r, c], mask, signed, slope, intercept, mlut, mfirst, use_mlut,
                                       center, width, function, vlut, vfirst, vscale, use_vlut, invert)
            n = (r1 - r0) * (c1s[j] - c0s[j])
            out[i, j] = (acc + n * _HALF) // (n * 65536)


@njit(cache=True, nogil=True)
def modality_minmax(src, mask, signed, slope, intercept, mlut, mfirst, use_mlut):  # pragma: no cover
    """Min and max of the modality-transform output over the whole frame (default VOI window)."""
    lo = np.inf
    hi = -np.inf
    rows, cols = src.shape
    for r in range(rows):
        for c in range(cols):
            s = np.int64(src[r, c]) & mask
            if signed and s > (mask >> 1):
                s -= mask + 1
            if use_mlut:
                k = s - mfirst
                if k < 0:
                    k = 0
                elif k >= mlut.shape[0]:
                    k = mlut.shape[0] - 1
                x = float(mlut[k])
            else:
                x = s * slope + intercept
            lo = min(lo, x)
            hi = max(hi, x)
    return lo, hi


@njit(cache=True, nogil=True)
def _colour_q(src, r, c, ch, mode, mask, cscale, pal, pfirst, pscale):  # pragma: no cover
    if mode == 0:  # RGB (PS3.3 C.7.6.3.1.2); more than 8 bits scaled to 8
        y = (np.int64(src[r, c, ch]) & mask) * cscale
    elif mode == 1:  # YBR_FULL -> RGB, PS3.3 C.7.6.3.1.2 (full range, ITU-R BT.601 coefficients)
        yy = float(np.int64(src[r, c, 0]) & mask)
        cb = float(np.int64(src[r, c, 1]) & mask) - 128.0
        cr = float(np.int64(src[r, c, 2]) & mask) - 128.0
        if ch == 0:
            y = yy + 1.402 * cr
        elif ch == 1:
            y = yy - 0.344136 * cb - 0.714136 * cr
        else:
            y = yy + 1.772 * cb
        if y < 0.0:
            y = 0.0
        elif y > 255.0:
            y = 255.0
    else:  # PALETTE COLOR, PS3.3 C.7.6.3.1.5; the input is a single-sample index
        k = (np.int64(src[r, c, 0]) & mask) - pfirst
        if k < 0:
            k = 0
        elif k >= pal.shape[0]:
            k = pal.shape[0] - 1
        y = pal[k, ch] * pscale
        y = min(y, 255.0)
    return np.int64(y * _FIX + 0.5)


@njit(cache=True, nogil=True)
def render_colour(src, out, mode, mask, cscale, pal, pfirst, pscale,
                  y0, x0, h, w, flip_y, flip_x):  # pragma: no cover
    """src (rows, cols, samples) -> out (out_h, out_w, 3) uint8. mode 0 RGB, 1 YBR_FULL, 2 palette."""
    oh, ow = out.shape[0], out.shape[1]
    if oh == h and ow == w:
        for i in range(oh):
            r = y0 + (oh - 1 - i if flip_y else i)
            for j in range(ow):
                c = x0 + (ow - 1 - j if flip_x else j)
                for ch in range(3):
                    q = _colour_q(src, r, c, ch, mode, mask, cscale, pal, pfirst, pscale)
                    out[i, j, ch] = (q + _HALF) >> 16
        return
    c0s, c1s = _column_spans(ow, w, x0, flip_x)
    for i in range(oh):
        ii = oh - 1 - i if flip_y else i
        r0, r1 = _span(ii, h, oh)
        r0 += y0
        r1 += y0
        for j in range(ow):
            n = (r1 - r0) * (c1s[j] - c0s[j])
            for ch in range(3):
                acc = np.int64(0)
                for r in range(r0, r1):
                    for c in range(c0s[j], c1s[j]):
                        acc += _colour_q(src, r, c, ch, mode, mask, cscale, pal, pfirst, pscale)
                out[i, j, ch] = (acc + n * _HALF) // (n * 65536)


#: Decoded dtypes the server meets; each gets compiled (or loaded from cache) by warm_up().
WARM_DTYPES = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32)


def warm_up() -> None:
    """Compile every kernel for the dtypes in WARM_DTYPES so no request pays for compilation.

    With ``cache=True`` a warm process start loads machine code from __pycache__ in about 0.15 s.
    """
    lut = np.zeros(4, np.int64)
    pal = np.zeros((4, 3), np.int64)
    for dt, readonly in [(d, r) for d in WARM_DTYPES for r in (False, True)]:
        # Native frames arrive as read-only views of the stored bytes: numba types those separately.
        src = np.zeros((4, 4), dt)
        src.setflags(write=not readonly)
        out = np.empty((2, 2), np.uint8)
        render_grey(src, out, 4095, True, 1.0, 0.0, lut, 0, False, 0.0, 1.0, 0, lut, 0, 1.0, False, False,
                    0, 0, 4, 4, False, False)
        modality_minmax(src, 4095, True, 1.0, 0.0, lut, 0, False)
        src3 = np.zeros((4, 4, 3), dt)
        src3.setflags(write=not readonly)
        render_colour(src3, np.empty((2, 2, 3), np.uint8), 0, 255, 1.0, pal, 0, 1.0, 0, 0, 4, 4, False, False)
        render_colour(src3, np.empty((4, 4, 3), np.uint8), 1, 255, 1.0, pal, 0, 1.0, 0, 0, 4, 4, False, False)
        src1 = np.zeros((4, 4, 1), dt)
        src1.setflags(write=not readonly)
        render_colour(src1, np.empty((2, 2, 3), np.uint8), 2, 255, 1.0, pal, 0, 1.0, 0, 0, 4, 4, False, False)
