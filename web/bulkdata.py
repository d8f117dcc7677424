"""WADO-RS bulk data (PS3.18 10.4.1.1.5): the values behind the BulkDataURIs of the metadata,
addressed by a tag path (``00420011`` or ``00540016/0/00181072``), with single byte ranges (206).

Pixel Data is served from the frame table without parsing the file: native pixels as stored, an
encapsulated one as its frames with their media type.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from io import BytesIO
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from archive.errors import NotFound
from archive.index import InstanceRecord
from archive.parse import NATIVE_SYNTAXES
from web.common import instance_uids, parse_accept
from web.errors import BadRequest, NotAcceptableRequest
from web.multipart import new_boundary, start_parts

_PATH_RE = re.compile(r"^[0-9A-Fa-f]{8}(/\d+/[0-9A-Fa-f]{8})*$")
_RANGE_RE = re.compile(r"^bytes=(\d{0,15})-(\d{0,15})$")
OCTET = "application/octet-stream"


def parse_tag_path(text: str) -> list[int | str]:
    """'00540016/0/00181072' to [tag, index, tag] (ints for indices, hex strings for tags)."""
    if not _PATH_RE.match(text):
        raise BadRequest(f"bulk data path {text[:80]!r} is invalid: must be TAG or TAG/ITEM/TAG... (8 hex digits)")
    out: list[int | str] = []
    for i, seg in enumerate(text.split("/")):
        out.append(seg.upper() if i % 2 == 0 else int(seg))
    return out


def element_value(data: bytes, path: list[int | str]) -> bytes:
    """The raw value of the element at ``path`` in a stored file; raises NotFound."""
    ds: Dataset = dcmread(BytesIO(data), force=True)
    current: Any = ds
    for i, seg in enumerate(path):
        if i % 2 == 0:
            tag = int(str(seg), 16)
            if tag not in current:
                raise NotFound(f"attribute ({str(seg)[:4]},{str(seg)[4:]}) is not in the instance")
            current = current[tag].value
        else:
            index = int(seg)
            if not isinstance(current, (list, tuple)) and type(current).__name__ != "Sequence":
                raise NotFound("bulk data path goes into an attribute that is not a sequence")
            if index >= len(current):
                raise NotFound(f"sequence item {index} does not exist")
            current = current[index]
    if isinstance(current, (bytes, bytearray)):
        return bytes(current)
    raise NotFound("the attribute at that path holds no binary value")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single RFC 9110 byte range as (start, end exclusive); None for no Range header."""
    if not header:
        return None
    match = _RANGE_RE.match(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        raise BadRequest(f"Range {header[:80]!r} is invalid: only one range 'bytes=start-end' is supported")
    first, last = match.group(1), match.group(2)
    if first:
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    else:
        start, end = max(size - int(last), 0), size
    if start >= size or start >= end:
        raise BadRequest(f"Range {header!r} is outside the {size} bytes of the value")
    return start, end


async def retrieve_bulkdata(request: Request) -> Response:
    from web.app import runtime

    rt = runtime(request)
    study, series, sop = instance_uids(request)
    path = parse_tag_path(request.path_params["path"])
    record = await rt.record(study, series, sop)
    multipart = _wants_multipart(request)
    if path == ["7FE00010"] and record.frame_info is not None and record.transfer_syntax_uid not in NATIVE_SYNTAXES:
        return await _encapsulated_pixels(rt, record)
    if path == ["7FE00010"] and record.frames is not None:
        value = b"".join([await rt.io(rt.archive.frame, record, n) for n in range(1, record.number_of_frames + 1)])
    else:
        data = await rt.io(rt.archive.read_file, record)
        value = await rt.cpu(element_value, data, path)
    span = byte_range(request.headers.get("range"), len(value))
    status, headers = 200, {}
    if span is not None:
        headers["Content-Range"] = f"bytes {span[0]}-{span[1] - 1}/{len(value)}"
        value, status = value[span[0] : span[1]], 206
    if not multipart:
        return Response(value, status_code=status, media_type=OCTET, headers=headers)
    boundary = new_boundary()

    async def one() -> AsyncIterator[tuple[str, list[tuple[str, str]], Any]]:
        yield OCTET, list(headers.items()), value

    return StreamingResponse(
        await start_parts(boundary, one()),
        status_code=status,
        media_type=f'multipart/related; type="{OCTET}"; boundary={boundary}',
    )


async def _encapsulated_pixels(rt: Any, record: InstanceRecord) -> Response:
    from web.wado import media_type_of

    ts = record.transfer_syntax_uid
    content_type = f"{media_type_of(ts)}; transfer-syntax={ts}"
    boundary = new_boundary()

    async def parts() -> AsyncIterator[tuple[str, list[tuple[str, str]], Any]]:
        for n in range(1, record.number_of_frames + 1):
            yield content_type, [], await rt.io(rt.archive.frame, record, n)

    return StreamingResponse(
        await start_parts(boundary, parts()),
        media_type=f'multipart/related; type="{media_type_of(ts)}"; boundary={boundary}',
    )


def _wants_multipart(request: Request) -> bool:
    for r in parse_accept(request):
        if r.media_type == "multipart/related" and r.part_type in ("", OCTET, "*/*"):
            return True
        if r.media_type in (OCTET, "*/*", "application/*"):
            return r.media_type == "*/*"
    raise NotAcceptableRequest(
        f"Accept {request.headers.get('accept')!r} cannot be satisfied: bulk data is available as "
        f'multipart/related; type="{OCTET}" or {OCTET}'
    )
