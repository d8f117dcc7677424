"""The one table from domain exceptions to HTTP statuses, and the handlers that apply it.

Mapping is by class hierarchy (most specific first). A bare ValueError or KeyError is never a 4xx:
anything unmapped is a 500 that tells the client nothing internal and logs the traceback.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from archive import errors as ae
from archive.access import AccessError
from render import errors as re_

log = logging.getLogger(__name__)


class BadRequest(Exception):
    """A request parameter, header or body the web layer itself rejects (400)."""


class PayloadTooLarge(Exception):
    """The request body is above the configured limit (413)."""


class UnsupportedMediaType(Exception):
    """The request's Content-Type is not one this resource accepts (415)."""


class NotAcceptableRequest(Exception):
    """No representation matches the Accept header (406)."""


STATUS_TABLE: tuple[tuple[type[BaseException], int], ...] = (
    (BadRequest, 400),
    (PayloadTooLarge, 413),
    (UnsupportedMediaType, 415),
    (NotAcceptableRequest, 406),
    (ae.NotFound, 404),
    (ae.InvalidQuery, 400),
    (ae.NotAcceptable, 406),
    (ae.InstanceConflict, 409),
    (AccessError, 400),
    (ae.IngestError, 400),
    (re_.UnsupportedTransferSyntax, 406),
    (re_.InvalidPixelModule, 422),
    (re_.DecodeError, 422),
)


def status_for(exc: BaseException) -> int | None:
    for cls, status in STATUS_TABLE:
        if isinstance(exc, cls):
            return status
    extra = getattr(re_, "InvalidRenderParameter", None)
    if extra is not None and isinstance(exc, extra):
        return 400
    return None


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    # PS3.18 8.6.3: an error body may be any media type; JSON with the reason is what clients show.
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


async def handle_domain_error(request: Request, exc: Exception) -> Response:
    status = status_for(exc)
    if status is None:
        return await handle_unexpected(request, exc)
    return error_response(status, str(exc))


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return error_response(exc.status_code, str(exc.detail))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal server error")


def exception_handlers() -> dict[type[BaseException] | int, object]:
    handlers: dict[type[BaseException] | int, object] = {HTTPException: handle_http_exception}
    for cls, _status in STATUS_TABLE:
        handlers[cls] = handle_domain_error
    handlers[ae.ArchiveError] = handle_domain_error
    handlers[re_.RenderError] = handle_domain_error
    handlers[Exception] = handle_unexpected
    return handlers
