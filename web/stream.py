"""Progressive rendered streams: ``GET /studies/{s}[/series/{r}]/rendered`` (PS3.18 8.3.5, 10.4.1.1.3)
as multipart/related, each frame sent as soon as it and those before it are rendered.

Every frame of every instance with pixel data takes part (instance order, then frame order), in the
order the client picks with ``order``: ``interleaved`` (default; middle, first, last, then halving the
gaps, so a viewer has a coarse view of the whole series after a few parts and refines it) or
``sequential``. The standard rendered parameters apply to every frame, so a viewer can ask for the
whole series at 128x128 first and at full size next. Each part carries its frame's rendered URL in
Content-Location, with the request's rendering parameters, so it can be cached under that URL.

Work is bounded: frames are rendered in the order they are sent, at most one per CPU thread ahead of
the part being written, so a client that reads slowly holds back the renders (the socket's buffers
fill, then the send waits). When the client closes the connection, the renders not yet started are
cancelled and no further frame is rendered; a render already in the CPU pool finishes (a pool call
cannot be interrupted) and lands in the cache, where the next request finds it.

``multipart_response`` is the one multipart writer of rendered frames: frame lists
(``.../frames/{list}/rendered``, in ``web.rendered``) go through it too.

Must not render frames itself: ``web.rendered.rendered_image`` does (cache and single-flight included).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from archive.index import InstanceRecord
from cache.prefetch import interleaved_order
from render.params import RenderParams
from web.common import path_uid
from web.errors import BadRequest
from web.multipart import stream_parts
from web.rendered import (
    _PARAMETERS,
    REVALIDATE,
    _canonical,
    _headers,
    _images_in,
    _not_modified,
    _retrieve,
    etag_of,
    mark_warmed,
    parse_request,
    rendered_image,
)

if TYPE_CHECKING:
    from web.app import Runtime

ORDERS = ("interleaved", "sequential")
_STREAM_PARAMETERS = (*_PARAMETERS, "order")

Item = tuple[InstanceRecord, int]


def parse_order(request: Request) -> str:
    """The ``order`` query parameter: interleaved (default) or sequential. Raises BadRequest."""
    raw = request.query_params.get("order")
    if raw is None or raw == "":
        return ORDERS[0]
    if raw.strip().lower() not in ORDERS:
        raise BadRequest(
            f"order: {raw[:40]!r} is not supported: must be one of interleaved (default), sequential"
        )
    return raw.strip().lower()


def ordered_frames(records: list[InstanceRecord], order: str) -> list[Item]:
    """Every (instance, frame) of ``records`` (instance order, then frame order), arranged by ``order``."""
    flat = [(r, n) for r in records for n in range(1, r.number_of_frames + 1)]
    if order == "sequential":
        return flat
    return [flat[i] for i in interleaved_order(len(flat))]


def frame_query(raw_query: str) -> str:
    """The request's query string without ``order``, as the client encoded it, with its ``?``.

    A frame's rendered resource takes the same rendering parameters but not ``order`` (it would be a
    400 there), so Content-Location must not carry it.
    """
    kept = [p for p in raw_query.split("&") if p and unquote_plus(p.partition("=")[0]) != "order"]
    return "?" + "&".join(kept) if kept else ""


def frame_url(root: str, record: InstanceRecord, frame: int, query: str) -> str:
    return (
        f"{root}/studies/{record.study_uid}/series/{record.series_uid}/instances/{record.sop_uid}"
        f"/frames/{frame}/rendered{query}"
    )


class _Renders:
    """Renders of ``items`` started in order, at most ``ahead`` in flight beyond the one being sent."""

    def __init__(self, rt: Runtime, items: list[Item], params: RenderParams, ahead: int) -> None:
        self._rt, self._params, self._ahead = rt, params, ahead
        self._todo = iter(items)
        self.pending: deque[tuple[InstanceRecord, int, asyncio.Future[tuple[bytes, str]]]] = deque()
        self.fill()

    def fill(self) -> None:
        while len(self.pending) < self._ahead:
            item = next(self._todo, None)
            if item is None:
                return
            record, frame = item
            task = asyncio.ensure_future(rendered_image(self._rt, record, frame, self._params))
            self.pending.append((record, frame, task))

    def cancel(self) -> None:
        """Stop: cancel what is pending and start nothing more."""
        self._todo = iter(())
        for _record, _frame, task in self.pending:
            task.cancel()
            task.add_done_callback(_retrieve)  # a render that failed meanwhile is not "never retrieved"
        self.pending.clear()


async def multipart_response(
    request: Request, rt: Runtime, items: list[Item], params: RenderParams, cache_control: str, started: float,
    *, warms: bool = False,
) -> Response:
    """multipart/related of the renderings of ``items``, sent in that order as they are ready, each
    part with its frame's rendered URL in Content-Location (a study, a series, or a frame list).

    Raises whatever rendering the first frame raises (before the response starts, so it gets a status).
    """
    from web.app import base_url

    # The tag covers the frames in their order and the parameters (so ``order`` too): cheap to build
    # before any render, and a 304 then costs one index lookup.
    etag = etag_of(items, params)
    if _not_modified(request, etag):
        return Response(status_code=304, headers=_headers(etag, cache_control, started))

    root, query = base_url(request), frame_query(request.url.query)
    # A series stream renders every frame of its series: while it runs, prefetch in this process need
    # not warm them again. Unmarked if it stops early (a cancelled stream rendered only some).
    marks = {(r.series_uid, _canonical(params), params.media_type) for r, _f in items} if warms else set()
    fresh = marks - rt.warmed
    mark_warmed(rt, fresh)
    renders = _Renders(rt, items, params, rt.cpu_threads)
    try:
        # The first part is rendered before the response starts, so its errors still get a status.
        await renders.pending[0][2]
    except BaseException:
        renders.cancel()
        rt.warmed.difference_update(fresh)
        raise

    async def parts() -> AsyncIterator[tuple[str, list[tuple[str, str]], Any]]:
        # Starlette cancels this generator when the client disconnects (it listens for
        # http.disconnect while streaming); ``finally`` then stops the renders.
        completed = False
        try:
            while renders.pending:
                record, frame, task = renders.pending.popleft()
                renders.fill()
                body, media_type = await task
                yield media_type, [("Content-Location", frame_url(root, record, frame, query))], body
            completed = True
        finally:
            renders.cancel()
            if not completed:
                rt.warmed.difference_update(fresh)

    # Derived from the tag, so equal tags mean equal bytes (a strong validator).
    boundary = "tessera-" + etag.strip('"')
    return StreamingResponse(
        stream_parts(boundary, parts()),
        media_type=f'multipart/related; type="{params.media_type}"; boundary={boundary}',
        headers=_headers(etag, cache_control, started),
    )


async def collection_rendered(request: Request) -> Response:
    """GET /studies/{s}[/series/{r}]/rendered: multipart/related of every frame, progressively.

    Raises BadRequest (a bad parameter or ``order``), NotFound (nothing to render),
    UnsupportedTransferSyntax, NotAcceptableRequest, and whatever rendering the first frame raises.
    """
    from web.app import runtime

    started = time.perf_counter()
    rt = runtime(request)
    study = path_uid(request, "study")
    series = path_uid(request, "series") if "series" in request.path_params else None
    params = parse_request(request, _STREAM_PARAMETERS)
    order = parse_order(request)
    items = ordered_frames(await _images_in(rt, study, series), order)
    return await multipart_response(request, rt, items, params, REVALIDATE, started, warms=True)


def routes() -> list[Route]:
    return [
        Route("/studies/{study}/rendered", collection_rendered, methods=["GET"]),
        Route("/studies/{study}/series/{series}/rendered", collection_rendered, methods=["GET"]),
    ]
