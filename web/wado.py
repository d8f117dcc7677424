"""WADO-RS (PS3.18 10.4): instances (study, series, instance), metadata, frames and bulk data; and
DELETE of studies, series and instances.

Responses stream part by part, so memory stays flat however large the series. Stored bytes are served
as stored whenever the client accepts them (``transfer-syntax=*``); conversions run in the CPU pool.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from archive.index import InstanceRecord
from archive.parse import BULK_URI_PREFIX, ENCAPSULATED_SYNTAXES, EXPLICIT_LE, NATIVE_SYNTAXES
from archive.transcode import check_convertible, frame_to_native, to_explicit_le
from web import bulkdata
from web.common import (
    MediaRange,
    dicom_json_response,
    instance_uids,
    optional_uid,
    parse_accept,
    path_uid,
    require_json_accept,
)
from web.errors import BadRequest, NotAcceptableRequest
from web.multipart import new_boundary, start_parts

CHUNK = 1 << 20
MAX_FRAMES_PER_REQUEST = 10000
OCTET = "application/octet-stream"

# PS3.18 Table 8.7.3-5 (and 10.4.1): the media type of each encapsulated transfer syntax.
_MEDIA_BY_TS = {
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.4.100": "video/mpeg2",
    "1.2.840.10008.1.2.4.101": "video/mpeg2",
    "1.2.840.10008.1.2.4.102": "video/mp4",
    "1.2.840.10008.1.2.4.103": "video/mp4",
    "1.2.840.10008.1.2.4.104": "video/mp4",
    "1.2.840.10008.1.2.4.105": "video/mp4",
    "1.2.840.10008.1.2.4.106": "video/mp4",
    "1.2.840.10008.1.2.4.107": "video/H265",
    "1.2.840.10008.1.2.4.108": "video/H265",
}
_ALIASES = {"image/x-dicom-rle": "image/dicom-rle", "image/x-jls": "image/jls"}


def media_type_of(ts: str) -> str:
    return _MEDIA_BY_TS.get(ts, OCTET)


# --- instances ----------------------------------------------------------------------------------


def _instances_target(ranges: list[MediaRange], stored: set[str], single_allowed: bool) -> tuple[str, bool]:
    """(target transfer syntax or '*', multipart?) for retrieving instances (PS3.18 8.7.3.5)."""
    for r in ranges:
        multipart = r.media_type == "multipart/related"
        if r.media_type in ("*/*", "multipart/*") or (multipart and r.part_type in ("", "*/*")):
            return EXPLICIT_LE, True
        if not (multipart and r.part_type == "application/dicom") and not (
            single_allowed and r.media_type == "application/dicom"
        ):
            continue
        ts = r.transfer_syntax or EXPLICIT_LE
        if ts == "*" or ts == EXPLICIT_LE or stored == {ts}:
            return ts, multipart
    raise NotAcceptableRequest(
        "none of the accepted representations can be produced: instances are available as "
        "multipart/related; type=\"application/dicom\" with transfer-syntax=* (as stored, "
        f"{', '.join(sorted(stored))}) or {EXPLICIT_LE}"
    )


async def retrieve_instances(request: Request) -> Response:
    from web.app import runtime

    rt = runtime(request)
    study = path_uid(request, "study")
    series = optional_uid(request, "series")
    sop = optional_uid(request, "instance")
    ranges = parse_accept(request)
    if sop is not None:
        records = [await rt.io(rt.archive.index.instance, study, series, sop)]
    else:
        records = await rt.io(rt.archive.index.instances, study, series)
    target, multipart = _instances_target(ranges, {r.transfer_syntax_uid for r in records}, sop is not None)
    if target != "*":
        for record in records:
            if record.transfer_syntax_uid != target:
                check_convertible(record)  # a 406 now, not a broken stream later
    if not multipart:
        record = records[0]
        ts = record.transfer_syntax_uid if target == "*" else target
        data = await _instance_bytes(rt, record, target)
        return Response(data, media_type=f"application/dicom; transfer-syntax={ts}")
    boundary = new_boundary()

    async def parts() -> AsyncIterator[tuple[str, list[tuple[str, str]], Any]]:
        for record in records:
            ts = record.transfer_syntax_uid if target == "*" or target == record.transfer_syntax_uid else target
            content_type = f"application/dicom; transfer-syntax={ts}"
            if ts == record.transfer_syntax_uid:
                yield content_type, [], _file_chunks(rt, record)
            else:
                yield content_type, [], await _instance_bytes(rt, record, ts)

    return StreamingResponse(
        await start_parts(boundary, parts()),
        media_type=f'multipart/related; type="application/dicom"; boundary={boundary}',
    )


async def _instance_bytes(rt: Any, record: InstanceRecord, target: str) -> bytes:
    data = await rt.io(rt.archive.read_file, record)
    if target in ("*", record.transfer_syntax_uid):
        return data
    return await rt.cpu(to_explicit_le, data, record, lambda n: rt.archive.frame(record, n))


async def _file_chunks(rt: Any, record: InstanceRecord) -> AsyncIterator[bytes]:
    offset = 0
    while offset < record.size:
        length = min(CHUNK, record.size - offset)
        yield await rt.io(rt.archive.storage.read_range, record.blob_key, offset, length)
        offset += length


# --- metadata -----------------------------------------------------------------------------------


async def retrieve_metadata(request: Request) -> Response:
    from web.app import base_url, runtime

    rt = runtime(request)
    require_json_accept(request)
    study = path_uid(request, "study")
    series = optional_uid(request, "series")
    sop = optional_uid(request, "instance")
    metas = await rt.io(rt.archive.index.metadata, study, series, sop)
    # The base comes from the Host header: escaped as JSON string content before it is spliced in.
    base = json.dumps(base_url(request))[1:-1]
    body = ("[" + ",".join(metas) + "]").replace(BULK_URI_PREFIX, '"BulkDataURI":"' + base)
    return dicom_json_response(body.encode("utf-8"))


# --- frames -------------------------------------------------------------------------------------

_FRAME_LIST_RE = re.compile(r"^\d{1,9}(,\d{1,9})*$")  # bounded digits: int() of huge strings raises


def parse_frame_list(text: str) -> list[int]:
    """'1,3,5' to [1, 3, 5] (PS3.18 8.3.3.1, 1-based); raises BadRequest naming the value."""
    if not _FRAME_LIST_RE.match(text):
        raise BadRequest(f"frame list {text[:80]!r} is invalid: must be comma-separated frame numbers from 1")
    numbers = [int(n) for n in text.split(",")]
    if any(n < 1 for n in numbers):
        raise BadRequest(f"frame list {text[:80]!r} is invalid: frame numbers start at 1")
    if len(numbers) > MAX_FRAMES_PER_REQUEST:
        raise BadRequest(f"frame list has {len(numbers)} frames: at most {MAX_FRAMES_PER_REQUEST} per request")
    return numbers


def frames_plan(ranges: list[MediaRange], stored_ts: str) -> tuple[str, bool]:
    """('stored' or 'native', multipart?) for a frames request (PS3.18 8.7.3.5.2, Table 8.7.3-5)."""
    stored_media = media_type_of(stored_ts)
    for r in ranges:
        multipart = r.media_type == "multipart/related"
        media = _ALIASES.get(r.part_type if multipart else r.media_type, r.part_type if multipart else r.media_type)
        if multipart and not media:
            media = OCTET
        ts = r.transfer_syntax
        if media in ("*/*", "multipart/*"):
            return "stored", True
        if media == OCTET:
            if ts == "*":
                return "stored", multipart
            if ts in (None, EXPLICIT_LE) or (ts == stored_ts and stored_ts in NATIVE_SYNTAXES):
                return "native", multipart
            continue
        if stored_ts in ENCAPSULATED_SYNTAXES and (
            media == stored_media or (media.endswith("/*") and stored_media.startswith(media[:-1]))
        ) and ts in (None, "*", stored_ts):
            return "stored", multipart
    raise NotAcceptableRequest(
        f"none of the accepted representations can be produced: frames are stored as {stored_ts} "
        f"({stored_media}) and available as that or as {OCTET} with transfer-syntax={EXPLICIT_LE}"
    )


async def retrieve_frames(request: Request) -> Response:
    from web.app import base_url, runtime

    rt = runtime(request)
    study, series, sop = instance_uids(request)
    numbers = parse_frame_list(request.path_params["frames"])
    record = await rt.record(study, series, sop)
    if record.frame_info is None:
        raise BadRequest(f"instance {sop} has no pixel data: it has no frames")
    last = record.number_of_frames
    beyond = [n for n in numbers if n > last]
    if beyond:
        from archive.errors import NotFound

        raise NotFound(f"frame {beyond[0]} of instance {sop} does not exist: it has {last} frames")
    mode, multipart = frames_plan(parse_accept(request), record.transfer_syntax_uid)
    if not multipart and len(numbers) > 1:
        raise NotAcceptableRequest("a single-part response holds one frame: accept multipart/related for several")
    if mode == "stored":
        content_type = f"{media_type_of(record.transfer_syntax_uid)}; transfer-syntax={record.transfer_syntax_uid}"
    else:
        content_type = f"{OCTET}; transfer-syntax={EXPLICIT_LE}"
    location = f"{base_url(request)}/studies/{study}/series/{series}/instances/{sop}/frames/"

    async def frame_bytes(n: int) -> bytes:
        data = await rt.io(rt.archive.frame, record, n)
        if mode == "native":
            data, _photometric = await rt.cpu(frame_to_native, data, record)
        return data

    if not multipart:
        return Response(await frame_bytes(numbers[0]), media_type=content_type)
    boundary = new_boundary()

    async def parts() -> AsyncIterator[tuple[str, list[tuple[str, str]], Any]]:
        for n in numbers:
            yield content_type, [("Content-Location", location + str(n))], await frame_bytes(n)

    part_type = content_type.split(";")[0]
    return StreamingResponse(
        await start_parts(boundary, parts()),
        media_type=f'multipart/related; type="{part_type}"; boundary={boundary}',
    )


# --- delete -------------------------------------------------------------------------------------


async def delete(request: Request) -> Response:
    from web.app import runtime

    rt = runtime(request)
    study = path_uid(request, "study")
    series = optional_uid(request, "series")
    sop = optional_uid(request, "instance")
    await rt.io(rt.archive.delete, study, series, sop)
    return Response(status_code=204)


def routes() -> list[Route]:
    inst = "/studies/{study}/series/{series}/instances/{instance}"
    return [
        Route("/studies/{study}", retrieve_instances, methods=["GET"]),
        Route("/studies/{study}", delete, methods=["DELETE"]),
        Route("/studies/{study}/metadata", retrieve_metadata, methods=["GET"]),
        Route("/studies/{study}/series/{series}", retrieve_instances, methods=["GET"]),
        Route("/studies/{study}/series/{series}", delete, methods=["DELETE"]),
        Route("/studies/{study}/series/{series}/metadata", retrieve_metadata, methods=["GET"]),
        Route(inst, retrieve_instances, methods=["GET"]),
        Route(inst, delete, methods=["DELETE"]),
        Route(inst + "/metadata", retrieve_metadata, methods=["GET"]),
        Route(inst + "/frames/{frames}", retrieve_frames, methods=["GET"]),
        Route(inst + "/bulkdata/{path:path}", bulkdata.retrieve_bulkdata, methods=["GET"]),
    ]
