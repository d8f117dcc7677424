"""Rendered resources (PS3.18 8.3.5, 10.4.1.1.3) at instance and frame level, and thumbnails (PS3.18
8.3.5 / Supplement 203) at every level; the study and series rendered streams are ``web.stream``.

Responsible for the HTTP edge of rendering: query parameters parsed once into a frozen
``RenderParams`` (``render.params``), media type negotiation (``accept`` query parameter, then the
Accept header), strong validators (ETag from the stored blob's key, frame number, canonical parameters
and media type, so a 304 costs one index lookup and no read or decode), and the placement of work: one
positioned read in the I/O pool, decode + kernel + encode in one call in the CPU pool.
``rendered_image`` is the one place a rendered frame is produced; the cache plugs in there.

Must not decode, window or encode pixels itself (``render.pipeline`` does), parse a Dataset, or read
whole files: the index record's FrameInfo and frame table are all the per-frame path needs.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterable
from dataclasses import replace
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from archive.errors import NotFound
from archive.index import InstanceRecord
from archive.parse import NATIVE_SYNTAXES
from cache import keys
from cache.metrics import observe_render
from cache.prefetch import interleaved_order, neighbours_order
from render.codecs.base import HTJ2K_SYNTAXES
from render.codecs.registry import candidates
from render.params import MEDIA_JPEG, MEDIA_PNG, RenderParams, Viewport, parse_render_params
from render.pipeline import StageTimes, render_staged
from render.transform import reduce_levels, resolve_region
from web.common import instance_uids, parse_accept_value, path_uid
from web.errors import BadRequest, NotAcceptableRequest
from web.tiles import is_tile_request, tile_bytes
from web.wado import parse_frame_list

if TYPE_CHECKING:
    from web.app import Runtime

#: Bump when the pipeline's output for the same stored bytes and parameters changes, so every ETag
#: (and later every cache key) built from it changes too.
RENDER_VERSION = "1"
#: A single instance's or frame's rendering changes only when its stored bytes do, and then its blob
#: key (part of the ETag) changes: a year, no revalidation.
IMMUTABLE = "private, max-age=31536000, immutable"
#: Study and series resources gain instances, so their representation under one URL changes:
#: always revalidate (the 304 is cheap).
REVALIDATE = "private, no-cache"
#: Sup 203: a thumbnail fits this box unless ``viewport`` says otherwise; it is never enlarged.
THUMBNAIL_BOX = 128
#: Largest output box a ``viewport`` may ask for (the output can be enlarged up to it): 8192x8192.
MAX_OUTPUT_SIDE = 8192
MAX_OUTPUT_PIXELS = MAX_OUTPUT_SIDE * MAX_OUTPUT_SIDE

_PARAMETERS = ("window", "viewport", "quality", "annotation", "iccprofile", "accept", "compression")
_ICC_ACCEPTED = ("no",)


# --- request parsing ----------------------------------------------------------------------------


@lru_cache(maxsize=256)
def negotiate_media_type(accept: str) -> str:
    """image/jpeg or image/png for an Accept value (PS3.18 8.3.5.1, 8.7.4); multipart ranges count
    by their ``type``. Raises NotAcceptableRequest when neither is acceptable. Remembered per value:
    clients send the same few on every request (a refusal raises, so it is not remembered)."""
    for r in parse_accept_value(accept, "accept"):
        media, part = r.media_type, r.part_type
        if media in ("multipart/related", "multipart/*"):
            media = part or "*/*"
        if media in (MEDIA_JPEG, MEDIA_PNG):
            return media
        if media in ("*/*", "image/*"):
            return MEDIA_JPEG
    raise NotAcceptableRequest(
        f"accept: {accept[:120]!r} cannot be satisfied: rendered resources are available as "
        f"{MEDIA_JPEG} (default) or {MEDIA_PNG}"
    )


def parse_request(request: Request, allowed: tuple[str, ...] = _PARAMETERS) -> RenderParams:
    """The rendered-resource query (PS3.18 8.3.5.1) as RenderParams, and the negotiated media type.

    ``annotation`` is refused (nothing is burned in); ``iccprofile`` accepts only ``no``. An unknown
    or repeated parameter is a 400 naming it; ``allowed`` lets a resource accept more (the series
    stream's ``order``), which that resource then parses itself. Raises BadRequest,
    InvalidRenderParameter, NotAcceptableRequest.
    """
    query = request.query_params
    for key in query:
        if key not in allowed:
            raise BadRequest(f"query parameter {key[:40]!r} is not supported here; allowed: {', '.join(allowed)}")
        if len(query.getlist(key)) > 1:
            raise BadRequest(f"{key}: given {len(query.getlist(key))} times, at most once allowed")
    annotation = query.get("annotation")
    if annotation:
        raise BadRequest(
            f"annotation: {annotation[:80]!r} is not supported: Tessera burns no annotations into "
            "rendered images (omit the parameter)"
        )
    icc = query.get("iccprofile")
    if icc and icc.strip().lower() not in _ICC_ACCEPTED:
        raise BadRequest(f"iccprofile: {icc[:40]!r} is not supported: only 'no' (no ICC profile embedded)")
    accept = query.get("accept") or request.headers.get("accept", "")
    media = negotiate_media_type(accept)
    params = parse_render_params(
        query.get("window"), query.get("viewport"), query.get("quality"), media, query.get("compression")
    )
    v = params.viewport
    if v is not None and v.vw * v.vh > MAX_OUTPUT_PIXELS:
        # The output fits vw x vh and may enlarge the source: an unbounded box is an allocation of
        # gigabytes (viewport=60000,60000 of a 64x64 frame held 4 GB and a core for minutes).
        raise BadRequest(
            f"viewport: {v.vw}x{v.vh} is {v.vw * v.vh} pixels, above the limit of {MAX_OUTPUT_PIXELS} "
            f"({MAX_OUTPUT_SIDE}x{MAX_OUTPUT_SIDE})"
        )
    return params


# --- validators ---------------------------------------------------------------------------------


def _canonical(params: RenderParams) -> str:
    w, v = params.window, params.viewport
    window = f"{w.center!r},{w.width!r},{w.function}" if w else "-"
    viewport = f"{v.vw},{v.vh},{v.sx},{v.sy},{v.sw},{v.sh}" if v else "-"
    # JPEG ignores ``compress``, PNG (lossless) ``quality``.
    quality = str(params.quality) if params.media_type == MEDIA_JPEG else ("-" if params.compress else "stored")
    return f"{window}|{viewport}|{quality}|{params.media_type}"


def etag_of(items: Iterable[tuple[InstanceRecord, int]], params: RenderParams) -> str:
    """Strong ETag of the rendering of these (instance, frame) pairs with these parameters.

    The blob key changes whenever an instance's stored bytes change (including its default window),
    so the tag changes exactly when the image can.
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{RENDER_VERSION}|{_canonical(params)}".encode())
    for record, frame in items:
        h.update(f"|{record.blob_key}:{frame}{_source(record, params)}".encode())
    return '"' + h.hexdigest() + '"'


def _source(record: InstanceRecord, params: RenderParams) -> str:
    """What else besides the stored blob the image derives from, for ETags and cache keys.

    A rendition decodes to exactly the original's pixels, so a full-resolution rendering is the same
    bytes with or without it; but a viewport shrunk by 2x or more decodes a reduced HTJ2K resolution,
    whose pixels differ slightly from a full decode averaged down: those images get their own tag.
    """
    info = record.frame_info
    if record.rendition is None or params.viewport is None or info is None:
        return ""
    return "|htj2k-reduced" if _reduces(info.rows, info.columns, params.viewport) else ""


@lru_cache(maxsize=1024)
def _reduces(rows: int, columns: int, viewport: Viewport) -> bool:
    """Whether this viewport of a rows x columns frame decodes a reduced resolution; remembered, as a
    series stream's tag asks it for every slice (all of one size)."""
    return reduce_levels(resolve_region(rows, columns, viewport)) > 0


def _render_key(record: InstanceRecord, frame: int, params: RenderParams) -> str:
    canonical = f"{RENDER_VERSION}|{_canonical(params)}{_source(record, params)}"
    return keys.rendered(record.blob_key, frame, canonical, params.media_type)


def _not_modified(request: Request, etag: str) -> bool:
    """RFC 9110 13.1.2: If-None-Match uses weak comparison; ``*`` matches any current representation."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


# --- the rendering seam -------------------------------------------------------------------------


async def rendered_image(rt: Runtime, record: InstanceRecord, frame: int, params: RenderParams) -> tuple[bytes, str]:
    """Frame ``frame`` (1-based) of ``record`` rendered: (image bytes, media type), PS3.18 8.3.5.

    One positioned read in the I/O pool, then decode + kernel + encode as one CPU-pool call. The
    cache plugs in here, keyed like ``etag_of([(record, frame)], params)``. Raises NotFound,
    InvalidRenderParameter, UnsupportedTransferSyntax, DecodeError.
    """
    assert record.frame_info is not None  # callers check before computing validators
    info = record.frame_info
    key = _render_key(record, frame, params)

    async def compute() -> bytes:
        started = time.perf_counter()
        body = await _compute_bytes(rt, record, frame, params)
        observe_render(info.transfer_syntax_uid, "total", time.perf_counter() - started)
        return body

    # The cache is keyed on the stored version (blob key): a replaced instance cannot serve old pixels.
    with rt.prefetch.interactive():
        body = await rt.flight.get_or_compute(key, compute)
    return body, params.media_type


def start_prefetch(rt: Runtime, record: InstanceRecord, frame: int, params: RenderParams) -> None:
    """Warm what a reader opens next, in the background (``_prefetch_around``); nothing, not even a
    task, with ``TESSERA_PREFETCH_NEIGHBOURS=0``."""
    radius = rt.settings.prefetch_neighbours
    if radius > 0:
        task = asyncio.ensure_future(_prefetch_around(rt, record, frame, params, radius))
        task.add_done_callback(_retrieve)


async def _prefetch_around(rt: Runtime, record: InstanceRecord, frame: int, params: RenderParams, radius: int) -> None:
    """The neighbouring frames (multi-frame) or slices (a series of single-frame instances) within
    ``radius``, nearest first; the whole series once, interleaved, behind them, where every process
    benefits (``Runtime.warm_series``)."""
    if record.number_of_frames > 1:
        around = [(record, i + 1) for i in neighbours_order(frame - 1, record.number_of_frames, radius)]
        _submit(rt, record.series_uid, around, params, urgent=True)
        return
    series = await _series_order(rt, record.study_uid, record.series_uid)
    position = next((i for i, r in enumerate(series) if r.sop_uid == record.sop_uid), None)
    if position is None:
        return
    around = [(series[i], 1) for i in neighbours_order(position, len(series), radius)]
    _submit(rt, record.series_uid, around, params, urgent=True)
    whole = (record.series_uid, _canonical(params), params.media_type)
    if rt.warm_series and whole not in rt.warmed:
        mark_warmed(rt, {whole})
        _submit(rt, record.series_uid, [(series[i], 1) for i in interleaved_order(len(series))], params, urgent=False)


def mark_warmed(rt: Runtime, wholes: set[tuple[str, str, str]]) -> None:
    """Remember (series, parameters, media type) as warmed in this process (bounded memory)."""
    if len(rt.warmed) + len(wholes) > 10000:
        rt.warmed.clear()
    rt.warmed.update(wholes)


def _submit(
    rt: Runtime, group: str, items: list[tuple[InstanceRecord, int]], params: RenderParams, *, urgent: bool
) -> None:
    wanted = [(_render_key(target, number, params), target, number) for target, number in items if _renderable(target)]
    # Neighbours already in this process's memory need no job: on a warm series queueing them anyway
    # cost a sixth of the server's time per scrolled frame.
    cached = rt.cache.peek_many([key for key, _t, _n in wanted])
    jobs = [
        (key, partial(rt.flight.get_or_compute, key, partial(_compute_bytes, rt, target, number, params)))
        for (key, target, number), hit in zip(wanted, cached)
        if hit is None
    ]
    if jobs:
        rt.prefetch.submit(group, jobs, urgent=urgent)


async def _compute_bytes(rt: Runtime, record: InstanceRecord, frame: int, params: RenderParams) -> bytes:
    """A cache miss: tiles (a source region of a compressed frame) are cut from a decoded frame kept
    per (frame, resolution level), decoded once for all concurrent tiles; everything else renders
    whole."""
    assert record.frame_info is not None
    if is_tile_request(record.frame_info, params):
        return await tile_bytes(rt, record, frame, params)
    return await _render_bytes(rt, record, frame, params)


async def _render_bytes(rt: Runtime, record: InstanceRecord, frame: int, params: RenderParams) -> bytes:
    """Read, decode, render, encode: one CPU-pool call (``Runtime.on_frame_source``).

    Compressed frames rendered at full resolution keep their decoded pixels in memory, so a new
    window or zoom on the same frame skips the decoder (24 ms for a lossless J2K CT slice). HTJ2K
    with a smaller viewport decodes a reduced resolution instead, which is cheaper than any cache.
    An instance with a rendition (archive/renditions.py) is decoded from its HTJ2K copy: the same
    pixels (verified when it was made), a 1.3 ms decode, and reduced resolutions for small viewports.
    """
    info = record.frame_info
    assert info is not None
    syntax = record.rendition.syntax if record.rendition is not None else info.transfer_syntax_uid
    reduced_htj2k = params.viewport is not None and syntax in HTJ2K_SYNTAXES
    if syntax in NATIVE_SYNTAXES or reduced_htj2k:
        body, _decoded, times = await rt.on_frame_source(record, frame, render_staged, frame - 1, params)
        _observe(syntax, times)
        return body
    # Decoded pixels are the same from the original and from its rendition: one cache entry.
    dkey = keys.decoded(record.blob_key, frame)
    decoded = rt.decoded.get(dkey)
    if decoded is not None:
        body, _decoded, times = await rt.cpu(render_staged, b"", info, frame - 1, params, decoded=decoded)
        _observe(syntax, times)
        return body
    threads = rt.frame_threads()
    body, decoded, times = await rt.on_frame_source(record, frame, render_staged, frame - 1, params, threads=threads)
    _observe(syntax, times)
    if decoded is not None:
        rt.decoded.put(dkey, decoded, decoded.array.nbytes)
    return body


def _observe(syntax: str, times: StageTimes) -> None:
    observe_render(syntax, "decode", times.decode)
    observe_render(syntax, "kernel", times.kernel)
    observe_render(syntax, "encode", times.encode)


async def _series_order(rt: Runtime, study: str, series: str) -> list[InstanceRecord]:
    """The series' instances in reading order, remembered per index generation."""
    now = time.monotonic()
    cached = rt.series_cache.get(series)
    if cached is not None and now - cached[0] < 1.0:
        return cached[2]  # re-checked at most once a second: prefetch order, not correctness
    generation = await rt.io(rt.archive.index.generation)
    if cached is not None and cached[1] == generation:
        rt.series_cache[series] = (now, generation, cached[2])
        return cached[2]
    records = await rt.io(rt.archive.index.instances, study, series)
    if len(rt.series_cache) > 256:
        rt.series_cache.clear()
    rt.series_cache[series] = (now, generation, records)
    return records


# --- responses ----------------------------------------------------------------------------------


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _renderable(record: InstanceRecord) -> bool:
    return record.frame_info is not None and record.number_of_frames > 0


def _require_image(record: InstanceRecord) -> None:
    if not _renderable(record):
        raise BadRequest(f"instance {record.sop_uid} has no pixel data: it cannot be rendered")
    candidates(record.transfer_syntax_uid)  # UnsupportedTransferSyntax (406) before any read


def _check_frames(record: InstanceRecord, numbers: list[int]) -> None:
    last = record.number_of_frames
    beyond = [n for n in numbers if n > last]
    if beyond:
        raise NotFound(f"frame {beyond[0]} of instance {record.sop_uid} does not exist: it has {last} frames")


def _headers(etag: str, cache_control: str, started: float) -> dict[str, str]:
    # Server-Timing: time inside the handler (lookup, read, render, encode), for benchmarks and
    # browser dev tools; it discloses nothing about the data.
    return {
        "ETag": etag,
        "Cache-Control": cache_control,
        "Vary": "Accept",
        "Server-Timing": f"app;dur={(time.perf_counter() - started) * 1000:.3f}",
    }


async def _single(
    request: Request, rt: Runtime, record: InstanceRecord, frame: int, params: RenderParams, cache_control: str,
    started: float,
) -> Response:
    etag = etag_of([(record, frame)], params)
    if _not_modified(request, etag):
        return Response(status_code=304, headers=_headers(etag, cache_control, started))
    body, media_type = await rendered_image(rt, record, frame, params)
    start_prefetch(rt, record, frame, params)
    return Response(body, media_type=media_type, headers=_headers(etag, cache_control, started))


# --- rendered -----------------------------------------------------------------------------------


async def _image_record(rt: Runtime, uids: tuple[str, str, str]) -> InstanceRecord:
    """The instance at ``uids``, which must hold an image this server can render. Raises NotFound,
    BadRequest (no pixel data) or UnsupportedTransferSyntax (406)."""
    record = await rt.record(*uids)
    _require_image(record)
    return record


async def instance_rendered(request: Request) -> Response:
    """GET .../instances/{i}/rendered: frame 1 (PS3.18 10.4.1.1.3)."""
    from web.app import runtime

    started = time.perf_counter()
    rt = runtime(request)
    uids = instance_uids(request)
    params = parse_request(request)
    record = await _image_record(rt, uids)
    return await _single(request, rt, record, 1, params, IMMUTABLE, started)


async def frames_rendered(request: Request) -> Response:
    """GET .../frames/{list}/rendered: one image, or multipart/related for several frames."""
    from web.app import runtime

    started = time.perf_counter()
    rt = runtime(request)
    uids = instance_uids(request)
    numbers = parse_frame_list(request.path_params["frames"])
    params = parse_request(request)
    record = await _image_record(rt, uids)
    _check_frames(record, numbers)
    if len(numbers) == 1:
        return await _single(request, rt, record, numbers[0], params, IMMUTABLE, started)
    from web.stream import multipart_response  # web.stream builds on this module

    return await multipart_response(request, rt, [(record, n) for n in numbers], params, IMMUTABLE, started)


async def _images_in(rt: Runtime, study: str, series: str | None) -> list[InstanceRecord]:
    records = [r for r in await rt.io(rt.archive.index.instances, study, series) if _renderable(r)]
    if not records:
        scope = f"series {series}" if series else f"study {study}"
        raise NotFound(f"{scope} has no instances with pixel data to render")
    for ts in {r.transfer_syntax_uid for r in records}:
        candidates(ts)  # one unsupported syntax is a 406 before the stream starts
    return records


# --- thumbnails ---------------------------------------------------------------------------------


def _thumbnail_params(params: RenderParams, record: InstanceRecord) -> RenderParams:
    """The request's parameters, with the default box when no viewport was given."""
    info = record.frame_info
    if params.viewport is not None or info is None:
        return params
    if info.rows <= THUMBNAIL_BOX and info.columns <= THUMBNAIL_BOX:
        return params  # already small: native size, not enlarged
    return replace(params, viewport=Viewport(THUMBNAIL_BOX, THUMBNAIL_BOX))


def _middle_frame(record: InstanceRecord) -> int:
    return (record.number_of_frames + 1) // 2


async def _thumbnail(
    request: Request, rt: Runtime, record: InstanceRecord, frame: int, params: RenderParams, cache_control: str,
    started: float,
) -> Response:
    return await _single(request, rt, record, frame, _thumbnail_params(params, record), cache_control, started)


async def instance_thumbnail(request: Request) -> Response:
    """GET .../instances/{i}/thumbnail: the middle frame (frame 1 of a single-frame instance)."""
    from web.app import runtime

    started = time.perf_counter()
    rt = runtime(request)
    uids = instance_uids(request)
    params = parse_request(request)
    record = await _image_record(rt, uids)
    return await _thumbnail(request, rt, record, _middle_frame(record), params, IMMUTABLE, started)


async def frame_thumbnail(request: Request) -> Response:
    """GET .../frames/{n}/thumbnail: that frame; a thumbnail is one image, so one frame number."""
    from web.app import runtime

    started = time.perf_counter()
    rt = runtime(request)
    uids = instance_uids(request)
    numbers = parse_frame_list(request.path_params["frames"])
    if len(numbers) != 1:
        raise BadRequest(f"frame list {request.path_params['frames'][:80]!r}: a thumbnail is one image, give one frame")
    params = parse_request(request)
    record = await _image_record(rt, uids)
    _check_frames(record, numbers)
    return await _thumbnail(request, rt, record, numbers[0], params, IMMUTABLE, started)


async def collection_thumbnail(request: Request) -> Response:
    """GET /studies/{s}[/series/{r}]/thumbnail: the series' middle instance (by instance order), its
    middle frame; for a study, the first series' representative."""
    from web.app import runtime

    started = time.perf_counter()
    rt = runtime(request)
    study = path_uid(request, "study")
    series = path_uid(request, "series") if "series" in request.path_params else None
    params = parse_request(request)
    records = await _images_in(rt, study, series)
    first_series = records[0].series_uid
    members = [r for r in records if r.series_uid == first_series]
    record = members[(len(members) - 1) // 2]
    return await _thumbnail(request, rt, record, _middle_frame(record), params, REVALIDATE, started)


def routes() -> list[Route]:
    """Instance and frame rendered resources and every thumbnail; the study and series rendered
    streams live in ``web.stream``."""
    inst = "/studies/{study}/series/{series}/instances/{instance}"
    return [  # the busiest first: Starlette tries routes in order
        Route(inst + "/frames/{frames}/rendered", frames_rendered, methods=["GET"]),
        Route(inst + "/rendered", instance_rendered, methods=["GET"]),
        Route(inst + "/frames/{frames}/thumbnail", frame_thumbnail, methods=["GET"]),
        Route(inst + "/thumbnail", instance_thumbnail, methods=["GET"]),
        Route("/studies/{study}/thumbnail", collection_thumbnail, methods=["GET"]),
        Route("/studies/{study}/series/{series}/thumbnail", collection_thumbnail, methods=["GET"]),
    ]
