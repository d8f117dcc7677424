"""The only place rendering stages are composed: decode (codec registry) -> fused numba kernel ->
encode. Pure functions on bytes and FrameInfo; callers run them in the render thread pool.

Must not do I/O, know HTTP, or touch a pydicom Dataset.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from render import kernels
from render.codecs import DecodedFrame
from render.codecs import decode as _decode
from render.codecs.base import HTJ2K_SYNTAXES
from render.encode import encode
from render.errors import InvalidRenderParameter
from render.frameinfo import FrameInfo
from render.lutinfo import prepared
from render.params import RenderParams
from render.reference import colour_scale
from render.transform import GreyTransform, Region, reduce_levels, resolve_grey, resolve_region

__all__ = ["decode_frame", "pixels_from_decoded", "reduce_levels", "render_frame", "render_pixels", "resolve_region"]

Preferences = Mapping[str, Sequence[str]]


def decode_frame(
    frame_bytes: bytes | memoryview,
    info: FrameInfo,
    *,
    reduce: int = 0,
    codec_preferences: Preferences | None = None,
    threads: int = 1,
) -> DecodedFrame:
    """Decode one stored frame (codestream or native bytes) with the preferred live backend, on up
    to ``threads`` threads where the codec can split a frame.

    Raises UnsupportedTransferSyntax, DecodeError.
    """
    return _decode(frame_bytes, info, reduce=reduce, preferences=codec_preferences, threads=threads)


def _check_frame(info: FrameInfo, frame_index: int) -> None:
    if not 0 <= frame_index < info.number_of_frames:
        raise InvalidRenderParameter(
            f"frame: index {frame_index} is out of range, the instance has {info.number_of_frames} frame(s)")


def _kernel_minmax(arr: np.ndarray):  # type: ignore[no-untyped-def]
    def minmax(t: GreyTransform) -> tuple[float, float]:
        lo, hi = kernels.modality_minmax(arr, int(t.mask), bool(t.signed), float(t.slope), float(t.intercept),
                                         t.mlut, int(t.mfirst), bool(t.use_mlut))
        return float(lo), float(hi)

    return minmax


def _geometry(r: Region) -> tuple[int, int, int, int, bool, bool]:
    return int(r.y0), int(r.x0), int(r.h), int(r.w), bool(r.flip_y), bool(r.flip_x)


def pixels_from_decoded(decoded: DecodedFrame, info: FrameInfo, frame_index: int, params: RenderParams) -> np.ndarray:
    """Run the fused kernel on an already decoded frame: uint8 (rows, cols) or (rows, cols, 3).

    Raises InvalidRenderParameter (viewport outside the frame).
    """
    region = resolve_region(info.rows, info.columns, params.viewport, 1 << decoded.reduce)
    arr = decoded.array
    if info.is_color:
        out = np.empty((region.out_h, region.out_w, 3), np.uint8)
        src = arr if arr.ndim == 3 else arr[:, :, None]
        pal = prepared(info).palette
        if info.photometric_interpretation == "PALETTE COLOR" and pal is not None:
            mode, table, first, pscale = 2, pal.data, pal.first, (1.0 / 256.0 if pal.bits > 8 else 1.0)
        else:
            mode = 1 if decoded.photometric in ("YBR_FULL", "YBR_FULL_422") else 0
            table, first, pscale = np.zeros((1, 3), np.int64), 0, 1.0
        kernels.render_colour(src, out, mode, (1 << info.bits_stored) - 1, colour_scale(info.bits_stored),
                              table, int(first), float(pscale), *_geometry(region))
        return out
    t = resolve_grey(info, frame_index, params.window, _kernel_minmax(arr))
    out = np.empty((region.out_h, region.out_w), np.uint8)
    kernels.render_grey(arr, out, int(t.mask), bool(t.signed), float(t.slope), float(t.intercept), t.mlut,
                        int(t.mfirst), bool(t.use_mlut), float(t.center), float(t.width), int(t.function),
                        t.vlut, int(t.vfirst), float(t.vscale), bool(t.use_vlut), bool(t.invert),
                        *_geometry(region))
    return out


def render_pixels(
    frame_bytes: bytes | memoryview,
    info: FrameInfo,
    frame_index: int,
    params: RenderParams,
    *,
    codec_preferences: Preferences | None = None,
) -> np.ndarray:
    """Decode and render frame ``frame_index`` (0-based) to uint8 pixels, before encoding.

    Applies PS3.18 8.3.5.1 rendering (window, viewport) per PS3.3 C.11 (modality, VOI, presentation).
    HTJ2K frames shrunk by 2x or more are decoded at reduced resolution. Raises
    InvalidRenderParameter, UnsupportedTransferSyntax, DecodeError.
    """
    _check_frame(info, frame_index)
    reduce = 0
    if params.viewport is not None and info.transfer_syntax_uid in HTJ2K_SYNTAXES:
        reduce = reduce_levels(resolve_region(info.rows, info.columns, params.viewport))
    decoded = decode_frame(frame_bytes, info, reduce=reduce, codec_preferences=codec_preferences)
    return pixels_from_decoded(decoded, info, frame_index, params)


@dataclass(frozen=True, slots=True)
class StageTimes:
    """Seconds spent in each stage of one rendering (for the latency histograms of /metrics)."""

    decode: float
    kernel: float
    encode: float


def render_staged(
    frame_bytes: bytes | memoryview,
    info: FrameInfo,
    frame_index: int,
    params: RenderParams,
    *,
    decoded: DecodedFrame | None = None,
    threads: int = 1,
) -> tuple[bytes, DecodedFrame, StageTimes]:
    """Decode (unless ``decoded`` is given), render and encode one frame, timing each stage.

    Returns (image bytes, the decoded frame, stage times). HTJ2K frames shrunk by 2x or more are
    decoded at reduced resolution. Raises InvalidRenderParameter, UnsupportedTransferSyntax,
    DecodeError.
    """
    _check_frame(info, frame_index)
    t0 = time.perf_counter()
    if decoded is None:
        reduce = 0
        if params.viewport is not None and info.transfer_syntax_uid in HTJ2K_SYNTAXES:
            reduce = reduce_levels(resolve_region(info.rows, info.columns, params.viewport))
        decoded = decode_frame(frame_bytes, info, reduce=reduce, threads=threads)
    t1 = time.perf_counter()
    pixels = pixels_from_decoded(decoded, info, frame_index, params)
    t2 = time.perf_counter()
    body = _encode(pixels, params)
    return body, decoded, StageTimes(t1 - t0, t2 - t1, time.perf_counter() - t2)


def render_decoded(decoded: DecodedFrame, info: FrameInfo, frame_index: int, params: RenderParams) -> bytes:
    """Render and encode an already decoded frame (re-windowing a cached decode, PS3.18 8.3.5).

    Raises InvalidRenderParameter.
    """
    return _encode(pixels_from_decoded(decoded, info, frame_index, params), params)


def render_frame(
    frame_bytes: bytes | memoryview,
    info: FrameInfo,
    frame_index: int,
    params: RenderParams,
    *,
    codec_preferences: Preferences | None = None,
) -> tuple[bytes, str]:
    """Render one frame and encode it: returns (image bytes, media type) (PS3.18 8.3.5).

    Raises InvalidRenderParameter, UnsupportedTransferSyntax, DecodeError.
    """
    pixels = render_pixels(frame_bytes, info, frame_index, params, codec_preferences=codec_preferences)
    return _encode(pixels, params), params.media_type


def _encode(pixels: np.ndarray, params: RenderParams) -> bytes:
    """The output image as ``params`` ask: media type, JPEG quality, PNG compression."""
    return encode(pixels, params.media_type, params.quality, params.compress)
