"""multipart/related bodies (RFC 2387) as DICOMweb uses them: reading STOW-RS requests as a stream
with a size limit, and writing streamed multipart responses.

Parsing is python-multipart's; this module only feeds it and collects the parts. Must not know DICOM.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from web.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType


@dataclass(slots=True)
class Part:
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)

    @property
    def content_type(self) -> str:
        return parse_media_type(self.headers.get("content-type", ""))[0]

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """('type/subtype' lower-cased, parameters with lower-cased names and unquoted values)."""
    media, params = parse_options_header(value or "")
    return media.decode("latin-1").strip().lower(), {
        k.decode("latin-1").lower(): v.decode("latin-1") for k, v in params.items()
    }


async def read_related(request: Request, *, max_bytes: int, part_type: str) -> list[Part]:
    """Read a multipart/related request body of ``part_type`` parts as it streams in.

    Raises UnsupportedMediaType (not multipart/related, or a ``type`` other than ``part_type``),
    BadRequest (no boundary, malformed body) or PayloadTooLarge (body above ``max_bytes``).
    """
    media, params = parse_media_type(request.headers.get("content-type", ""))
    if media != "multipart/related":
        raise UnsupportedMediaType(
            f"Content-Type {media or '(none)'!r} is not supported: use multipart/related; type=\"{part_type}\""
        )
    declared_type = params.get("type", "").lower()
    if declared_type and declared_type != part_type:
        raise UnsupportedMediaType(
            f"multipart/related type {declared_type!r} is not supported: only {part_type!r} is accepted"
        )
    boundary = params.get("boundary")
    if not boundary:
        raise BadRequest("Content-Type multipart/related has no boundary parameter")
    declared_length = request.headers.get("content-length")
    if declared_length and declared_length.isdigit() and int(declared_length) > max_bytes:
        raise PayloadTooLarge(f"request body of {declared_length} bytes is above the limit of {max_bytes} bytes")

    parts: list[Part] = []
    current: Part | None = None
    header_name: list[bytes] = []
    header_value: list[bytes] = []

    def on_part_begin() -> None:
        nonlocal current
        current = Part()
        parts.append(current)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        assert current is not None
        current.chunks.append(data[start:end])

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_name.append(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.append(data[start:end])

    def on_header_end() -> None:
        assert current is not None
        current.headers[b"".join(header_name).decode("latin-1").strip().lower()] = (
            b"".join(header_value).decode("latin-1").strip()
        )
        header_name.clear()
        header_value.clear()

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
        },
        max_header_count=32,
    )
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise PayloadTooLarge(f"request body is above the limit of {max_bytes} bytes")
            parser.write(chunk)
        parser.finalize()
    except ClientDisconnect:
        raise BadRequest("the client closed the connection before the body was complete") from None
    except (ValueError, IndexError, Exception) as exc:  # python-multipart raises its own error types
        if isinstance(exc, (PayloadTooLarge, BadRequest)):
            raise
        raise BadRequest(f"malformed multipart/related body: {exc}") from None
    return parts


def new_boundary() -> str:
    return "tessera-" + secrets.token_hex(12)


def part_header(boundary: str, content_type: str, extra: Iterable[tuple[str, str]] = ()) -> bytes:
    lines = [f"--{boundary}", f"Content-Type: {content_type}"]
    lines.extend(f"{k}: {v}" for k, v in extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def closing(boundary: str) -> bytes:
    return f"\r\n--{boundary}--\r\n".encode("latin-1")


async def start_parts(
    boundary: str, parts: AsyncIterator[tuple[str, list[tuple[str, str]], AsyncIterator[bytes] | bytes]]
) -> AsyncIterator[bytes]:
    """Like ``stream_parts`` but the first part is produced before this returns, so an error in it
    (a 404, 406 or decode failure) still becomes a proper status instead of a broken stream."""
    try:
        first = await anext(parts)
    except StopAsyncIteration:
        first = None

    async def replay() -> AsyncIterator[tuple[str, list[tuple[str, str]], AsyncIterator[bytes] | bytes]]:
        if first is not None:
            yield first
            async for item in parts:
                yield item

    return stream_parts(boundary, replay())


async def stream_parts(
    boundary: str, parts: AsyncIterator[tuple[str, list[tuple[str, str]], AsyncIterator[bytes] | bytes]]
) -> AsyncIterator[bytes]:
    """Yield a multipart/related body part by part; each part's content may itself stream."""
    first = True
    async for content_type, headers, body in parts:
        yield (b"" if first else b"\r\n") + part_header(boundary, content_type, headers)
        first = False
        if isinstance(body, (bytes, bytearray, memoryview)):
            yield bytes(body)
        else:
            async for chunk in body:
                yield chunk
    if first:
        return
    yield closing(boundary)
