"""STOW-RS: ``POST /studies[/{study}]`` (PS3.18 10.5).

Reads the multipart/related body as a stream under a size limit, stores every application/dicom part
independently (one bad part never blocks the good ones) and answers with the Store Instances Response
Module: ReferencedSOPSequence, FailedSOPSequence with FailureReason, RetrieveURL (PS3.18 10.5.3).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from archive.service import StoreResult
from web.auth import note_access
from web.common import dicom_json_response, optional_uid
from web.errors import BadRequest
from web.multipart import read_related

log = logging.getLogger(__name__)
_CANNOT_UNDERSTAND = 0xC000


async def store_instances(request: Request) -> Response:
    from web.app import base_url, runtime

    rt = runtime(request)
    study = optional_uid(request, "study")
    parts = await read_related(request, max_bytes=rt.settings.max_request_bytes, part_type="application/dicom")
    if not parts:
        raise BadRequest("the multipart/related body has no parts")
    blobs, foreign = [], 0
    for part in parts:
        if part.content_type in ("application/dicom", ""):
            blobs.append(part.data)
        else:
            foreign += 1  # e.g. application/dicom+json metadata parts: not supported, reported below
    results = await rt.io(rt.archive.store, blobs, expected_study=study) if blobs else []
    if rt.renditions is not None and any(r.ok for r in results):
        rt.renditions.kick()  # new instances may need a rendition: look now, not at the next poll
    stored = [r for r in results if r.ok]
    note_access(request.scope, studies={r.study_uid for r in stored}, series={r.series_uid for r in stored},
                instances=[r.sop_instance_uid for r in stored])
    base = base_url(request)
    body, status = _response_body(results, foreign, base, study)
    for r in results:
        if not r.ok:
            # No patient data in logs: only UIDs and the reason.
            # The message can quote element values (pydicom's text): it goes to the client, not the log.
            log.info("STOW failure for SOP %s: 0x%04X", r.sop_instance_uid or "?", r.failure_reason)
    return dicom_json_response(body, status_code=status)


def _response_body(
    results: list[StoreResult], foreign: int, base: str, study: str | None
) -> tuple[dict[str, Any], int]:
    stored = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    body: dict[str, Any] = {}
    studies = {r.study_uid for r in stored}
    if study is not None:
        body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{study}"]}
    elif len(studies) == 1:
        body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{next(iter(studies))}"]}
    if stored:
        body["00081199"] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": {"vr": "UI", "Value": [r.sop_class_uid]},
                    "00081155": {"vr": "UI", "Value": [r.sop_instance_uid]},
                    "00081190": {
                        "vr": "UR",
                        "Value": [f"{base}/studies/{r.study_uid}/series/{r.series_uid}/instances/{r.sop_instance_uid}"],
                    },
                }
                for r in stored
            ],
        }
    failure_items = [_failure_item(r.sop_class_uid, r.sop_instance_uid, r.failure_reason, r.message) for r in failed]
    failure_items += [
        _failure_item("", "", _CANNOT_UNDERSTAND, "part is not application/dicom: only application/dicom is accepted")
        for _ in range(foreign)
    ]
    if failure_items:
        body["00081198"] = {"vr": "SQ", "Value": failure_items}
    if not failure_items:
        return body, 200
    if stored:
        return body, 202
    # Nothing stored: 400 when every failure is an unreadable instance, else 409 (PS3.18 10.5.3.2).
    reasons = {r.failure_reason for r in failed} | ({_CANNOT_UNDERSTAND} if foreign else set())
    return body, 400 if reasons <= {_CANNOT_UNDERSTAND} else 409


def _failure_item(sop_class: str, sop_uid: str, reason: int, message: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "00081150": {"vr": "UI", "Value": [sop_class]} if sop_class else {"vr": "UI"},
        "00081155": {"vr": "UI", "Value": [sop_uid]} if sop_uid else {"vr": "UI"},
        "00081197": {"vr": "US", "Value": [reason]},
    }
    # Error Comment, as dcm4chee reports it, so a client can show what was wrong with the file.
    item["00000902"] = {"vr": "LO", "Value": [message[:1024]]}
    return item


def routes() -> list[Route]:
    return [
        Route("/studies", store_instances, methods=["POST"]),
        Route("/studies/{study}", store_instances, methods=["POST"]),
    ]
