"""Tiles of large images: rendered requests for a source region, cut from a decoded frame kept per
(frame, resolution level), and the non-standard tile descriptor a viewer plans its requests with.

A tile is an ordinary PS3.18 8.3.5.1.3 rendered request whose ``viewport`` names a source region
(``viewport=vw,vh,sx,sy,sw,sh``) of a compressed frame. A viewer asks for many regions of one frame
at once (a 2048x2048 frame is 64 tiles of 256 px), so each tile must not decode the frame again: the
first tile decodes it into ``rt.decoded`` (``cache.keys.decoded(blob_key, frame, level)``) and tiles
arriving while that decode runs wait for it instead of starting their own. HTJ2K decodes only the
resolution level the tile is shown at (level k = 1/2^k), so a zoomed-out view never decodes full size.

``GET .../instances/{i}/tiles`` answers the instance's size and its pyramid of 256-pixel tiles (level 0
= full size, each next level half of it, down to the first that fits in one tile); tile (k, tx, ty)
is the request ``viewport=vw,vh,sx,sy,sw,sh`` with ``s = 256 * 2^k``, ``sx = tx * s``, ``sy = ty * s``,
``sw = sh = s`` and ``vw = ceil(min(s, columns - sx) / 2^k)``, ``vh = ceil(min(s, rows - sy) / 2^k)``.

Must not render or encode pixels itself (``render.pipeline`` does) nor build cache keys by hand.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import weakref
from dataclasses import replace
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from archive.index import InstanceRecord
from archive.parse import NATIVE_SYNTAXES
from cache import keys
from cache.metrics import observe_render
from render.codecs import DecodedFrame
from render.codecs.base import HTJ2K_SYNTAXES
from render.frameinfo import FrameInfo
from render.params import RenderParams
from render.pipeline import decode_frame, reduce_levels, render_decoded, resolve_region
from web.common import instance_uids

if TYPE_CHECKING:
    from web.app import Runtime

#: The edge of a tile in the descriptor, in output pixels (the common choice of WSI viewers and
#: DICOM VL Whole Slide Microscopy pyramids).
TILE_SIZE = 256

# Decodes in progress per runtime, so concurrent tiles of one frame share one decode. Held beside
# the Runtime rather than in it: only this module needs it, and it goes away with the runtime.
_Flights = dict[str, "asyncio.Future[DecodedFrame]"]
_decoding: weakref.WeakKeyDictionary[Runtime, _Flights] = weakref.WeakKeyDictionary()


def is_tile_request(info: FrameInfo, params: RenderParams) -> bool:
    """True for a rendered request of a source region (not the whole frame) of a compressed frame.

    Native frames are left to the ordinary path: their "decode" is the positioned read itself.
    """
    v = params.viewport
    if v is None or (v.sx, v.sy, v.sw, v.sh) == (0, 0, None, None):
        return False
    return info.transfer_syntax_uid not in NATIVE_SYNTAXES


def tile_level(info: FrameInfo, params: RenderParams) -> int:
    """The resolution level to decode for this request: how many halvings the output allows, for
    HTJ2K (whose decoder can stop early); 0 for codecs that always decode full size.

    Raises InvalidRenderParameter when the region lies outside the frame.
    """
    region = resolve_region(info.rows, info.columns, params.viewport)
    if info.transfer_syntax_uid not in HTJ2K_SYNTAXES:
        return 0
    return reduce_levels(region)


async def tile_bytes(rt: Runtime, record: InstanceRecord, frame: int, params: RenderParams) -> bytes:
    """Render the region ``params.viewport`` names from the (cached) decoded frame (PS3.18 8.3.5.1.3).

    Raises InvalidRenderParameter, UnsupportedTransferSyntax, DecodeError.
    """
    info = record.frame_info
    assert info is not None
    # With an HTJ2K rendition the level comes from the rendition's syntax: it can decode just the
    # resolution a zoomed-out tile needs, where the J2K original would decode full size.
    source = info if record.rendition is None else replace(info, transfer_syntax_uid=record.rendition.syntax)
    decoded = await decoded_frame(rt, record, frame, tile_level(source, params))
    return await rt.cpu(render_decoded, decoded, info, frame - 1, params)


async def decoded_frame(rt: Runtime, record: InstanceRecord, frame: int, level: int) -> DecodedFrame:
    """Frame ``frame`` decoded at resolution ``level`` (or finer, when the codec cannot reduce): from
    ``rt.decoded``, from a decode already running, or decoded now and kept.

    A caller that goes away does not cancel a decode others may be waiting for (it is shielded).
    Raises UnsupportedTransferSyntax, DecodeError.
    """
    key = keys.decoded(record.blob_key, frame, level)
    running = _decoding.setdefault(rt, {})
    flight = running.get(key)
    if flight is None:
        # Looked up only when no decode is running, so a decode counts one miss however many
        # tiles wait for it (tessera_cache_requests_total{tier="decoded"}).
        cached = rt.decoded.get(key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        flight = asyncio.ensure_future(_decode(rt, record, frame, level, key))
        running[key] = flight

        def landed(task: asyncio.Future[DecodedFrame]) -> None:
            if running.get(key) is task:
                del running[key]
            if not task.cancelled():
                task.exception()  # retrieved: every waiter may have gone away

        flight.add_done_callback(landed)
    return await asyncio.shield(flight)


async def _decode(rt: Runtime, record: InstanceRecord, frame: int, level: int, key: str) -> DecodedFrame:
    decoded, syntax, seconds = await rt.on_frame_source(record, frame, _timed_decode, level, rt.frame_threads())
    observe_render(syntax, "decode", seconds)
    rt.decoded.put(key, decoded, decoded.array.nbytes)
    return decoded


def _timed_decode(data: bytes, info: FrameInfo, level: int, threads: int) -> tuple[DecodedFrame, str, float]:
    """Decode in the CPU pool; the syntax actually read (a rendition, or the original when the
    rendition is unreadable) and the decode time alone, for the metric."""
    started = time.perf_counter()
    decoded = decode_frame(data, info, reduce=level, threads=threads)
    return decoded, info.transfer_syntax_uid, time.perf_counter() - started


def pyramid(rows: int, columns: int, tile_size: int = TILE_SIZE) -> list[dict[str, int]]:
    """Levels of 2^k downsampling (sizes rounded up, as wavelet decoders produce them) from full size
    down to the first level that fits in one tile."""
    levels = []
    level = 0
    while True:
        r, c = -(-rows // (1 << level)), -(-columns // (1 << level))
        levels.append({"level": level, "rows": r, "columns": c,
                       "tiles_x": -(-c // tile_size), "tiles_y": -(-r // tile_size)})
        if r <= tile_size and c <= tile_size:
            return levels
        level += 1


async def instance_tiles(request: Request) -> Response:
    """GET .../instances/{i}/tiles (non-standard): the tile pyramid of an instance, as JSON
    ``{rows, columns, frames, tile_size, levels: [{level, rows, columns, tiles_x, tiles_y}]}``."""
    from web.app import runtime
    from web.rendered import IMMUTABLE, _image_record, _not_modified

    rt = runtime(request)
    record = await _image_record(rt, instance_uids(request))
    info = record.frame_info
    assert info is not None
    # The descriptor depends only on the stored version: a strong tag from its blob key.
    digest = hashlib.blake2b(f"tiles|{TILE_SIZE}|{record.blob_key}".encode(), digest_size=16).hexdigest()
    etag = f'"{digest}"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    body = {
        "rows": info.rows,
        "columns": info.columns,
        "frames": record.number_of_frames,
        "tile_size": TILE_SIZE,
        "levels": pyramid(info.rows, info.columns),
    }
    return JSONResponse(body, headers=headers)


def routes() -> list[Route]:
    inst = "/studies/{study}/series/{series}/instances/{instance}"
    return [Route(inst + "/tiles", instance_tiles, methods=["GET"])]
