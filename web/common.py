"""Edge helpers shared by the DICOMweb route modules: path UIDs, Accept parsing, JSON responses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from archive.parse import UID_RE
from web.errors import BadRequest, NotAcceptableRequest
from web.multipart import parse_media_type

DICOM_JSON = "application/dicom+json"


def path_uid(request: Request, name: str) -> str:
    """The UID in path segment ``name``, validated (PS3.5 9.1); raises BadRequest naming it."""
    value = request.path_params[name]
    if len(value) > 64 or not UID_RE.match(value):
        label = {"study": "StudyInstanceUID", "series": "SeriesInstanceUID", "instance": "SOPInstanceUID"}[name]
        raise BadRequest(f"{label} {value[:80]!r} in the URL is invalid: must be digits and dots, at most 64 characters")
    return value


def instance_uids(request: Request) -> tuple[str, str, str]:
    """Study, series and SOP Instance UID of an instance path; raises BadRequest naming a bad one."""
    return path_uid(request, "study"), path_uid(request, "series"), path_uid(request, "instance")


def optional_uid(request: Request, name: str) -> str | None:
    return path_uid(request, name) if name in request.path_params else None


@dataclass(frozen=True, slots=True)
class MediaRange:
    media_type: str
    params: dict[str, str]
    q: float

    @property
    def part_type(self) -> str:
        """The ``type`` parameter of a multipart/related range, lower-cased ('' when absent)."""
        return self.params.get("type", "").strip().lower()

    @property
    def transfer_syntax(self) -> str | None:
        value = self.params.get("transfer-syntax")
        return value.strip() if value else None


def parse_accept(request: Request) -> list[MediaRange]:
    """Accept header as media ranges ordered by preference (q, then order); '*/*' when absent."""
    return parse_accept_value(request.headers.get("accept", ""), "Accept")


def parse_accept_value(value: str, name: str) -> list[MediaRange]:
    """An Accept value (header or ``accept`` query parameter) as media ranges by preference.

    Raises BadRequest naming ``name`` when a q value is not a number.
    """
    ranges = []
    for position, item in enumerate(_split_accept(value or "*/*")):
        media, params = parse_media_type(item)
        if not media:
            continue
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            raise BadRequest(f"{name}: q value in {item.strip()!r} is not a number") from None
        if q > 0:
            ranges.append((-q, position, MediaRange(media, params, q)))
    ranges.sort(key=lambda t: (t[0], t[1]))
    return [r for _q, _p, r in ranges]


def _split_accept(header: str) -> list[str]:
    # Commas inside quoted parameter values (type="...") are not separators.
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    return [i for i in items if i.strip()]


def require_json_accept(request: Request) -> None:
    """QIDO and metadata answer in DICOM JSON only; raises NotAcceptableRequest otherwise."""
    for r in parse_accept(request):
        if r.media_type in (DICOM_JSON, "application/json", "*/*", "application/*"):
            return
        if r.media_type == "multipart/related" and r.part_type in (DICOM_JSON, ""):
            return
    raise NotAcceptableRequest(
        f"Accept {request.headers.get('accept')!r} cannot be satisfied: this resource is only available "
        f"as {DICOM_JSON}"
    )


def dicom_json_response(body: bytes | str | Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return Response(body, status_code=status_code, media_type=DICOM_JSON, headers=headers)
