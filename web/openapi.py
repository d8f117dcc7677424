"""The OpenAPI 3.1 description of every route the server answers, served at ``GET /openapi.json``.

Responsible for one honest document: each path with its parameters (the same patterns and bounds the
route modules enforce: UIDs PS3.5 9.1, frame lists PS3.18 8.3.3.1, rendered parameters PS3.18 8.3.5.1,
QIDO keys PS3.18 10.6.1), its request body, and every status and media type the handler can really
answer, with the error body of ``web.errors``. The served copy lists only the operations the running
application has routes for, so it never describes a route that is not there (the auth routes appear
once they are mounted). Checked against the running server with schemathesis
(``tests/security/test_schemathesis.py``).

Must not validate requests itself nor import the route modules: it describes them, the route modules
stay the authority, and ``tests/security`` fails when the two disagree.
"""

from __future__ import annotations

import copy
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from archive.query import ATTRIBUTES, LEVELS, MAX_LIMIT

JSON = "application/json"
HTML = "text/html"
DICOM_JSON = "application/dicom+json"
MULTIPART = "multipart/related"
OCTET = "application/octet-stream"
SESSION_COOKIE = "tessera_session"
ROOT = "/dicomweb"
INST = ROOT + "/studies/{study}/series/{series}/instances/{instance}"

#: PS3.5 9.1: digits and dots, no empty component, at most 64 characters.
UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"
#: web.wado.parse_frame_list: 1-based numbers of at most 9 digits, comma-separated.
FRAMES_PATTERN = r"^[0-9]{1,9}(,[0-9]{1,9})*$"
#: web.bulkdata.parse_tag_path: TAG or TAG/ITEM/TAG..., tags as 8 hex digits.
TAG_PATH_PATTERN = r"^[0-9A-Fa-f]{8}(/[0-9]+/[0-9A-Fa-f]{8})*$"
#: Frame media types of web.wado (PS3.18 Table 8.7.3-5), the native form and the multipart wrapper.
FRAME_MEDIA = (OCTET, "image/jpeg", "image/jls", "image/jp2", "image/jphc", "image/dicom-rle",
               "video/mpeg2", "video/mp4", "video/H265", MULTIPART)
IMAGE_MEDIA = ("image/jpeg", "image/png")

_ERROR_TEXT = {
    400: "A path segment, query parameter, header or body is invalid; the error names it.",
    401: "No valid credentials: a bearer token or a session cookie is required.",
    403: "The caller's role or share scope does not allow this.",
    404: "No such study, series, instance, frame or attribute, or nothing to render.",
    406: "None of the accepted representations (Accept header or accept parameter) can be produced.",
    409: "An instance conflicts with a stored one (TESSERA_OVERWRITE=0).",
    413: "The request body is above TESSERA_MAX_REQUEST_BYTES.",
    415: "The request's Content-Type is not accepted here.",
    422: "The stored pixel data cannot be decoded or its pixel module is inconsistent.",
    429: "Too many sign-in attempts from this client; retry later.",
    414: "The URL (path and query) is longer than 8192 characters.",
    431: "The request headers are above the size limit.",
}


def _error(status: int) -> dict[str, Any]:
    return {"description": _ERROR_TEXT[status], "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _error(s) for s in statuses}


def _media(*types: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {t: {"schema": schema or {"type": "string", "format": "binary"}} for t in types}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


# --- parameters ------------------------------------------------------------------------------------


def _path(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


def _uid_param(name: str, keyword: str) -> dict[str, Any]:
    return _path(name, f"{keyword} (digits and dots, at most 64 characters)",
                 {"type": "string", "pattern": UID_PATTERN, "minLength": 1, "maxLength": 64})


def _query(name: str, description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema, **extra}


def _header(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "description": description,
            "schema": {"type": "string"}}


PARAMETERS: dict[str, dict[str, Any]] = {
    "study": _uid_param("study", "StudyInstanceUID"),
    "series": _uid_param("series", "SeriesInstanceUID"),
    "instance": _uid_param("instance", "SOPInstanceUID"),
    "frames": _path("frames", "1-based frame numbers, comma-separated (PS3.18 8.3.3.1); at most 10000",
                    {"type": "string", "pattern": FRAMES_PATTERN, "maxLength": 100000}),
    "frame": _path("frames", "one 1-based frame number (a thumbnail is one image)",
                   {"type": "string", "pattern": r"^[0-9]{1,9}$"}),
    "tagPath": _path("path", "TAG or TAG/ITEM/TAG..., each tag 8 hex digits (PS3.18 10.4.1.1.5)",
                     {"type": "string", "pattern": TAG_PATH_PATTERN}),
    "accept": _header("Accept", "Media ranges the client accepts; multipart ranges count by their type "
                                "and transfer-syntax parameters (PS3.18 8.7)."),
    "ifNoneMatch": _header("If-None-Match", "Entity tags of cached representations: a match is a 304."),
    "range": _header("Range", "One byte range, bytes=start-end, bytes=start- or bytes=-suffix."),
    "window": _query(
        "window", "center,width,function (PS3.18 8.3.5.1.4); function: linear, linear-exact, sigmoid",
        {"type": "string",
         "pattern": r"^-?[0-9]{1,6}(\.[0-9]{1,3})?,[0-9]{1,6}(\.[0-9]{1,3})?,(linear|linear-exact|sigmoid)$"},
    ),
    "viewport": _query(
        "viewport", "vw,vh or vw,vh,sx,sy,sw,sh (PS3.18 8.3.5.1.3): fit inside vw x vh; a negative sw/sh flips",
        {"type": "string",
         "pattern": r"^[0-9]{1,4},[0-9]{1,4}(,[0-9]{0,4},[0-9]{0,4},-?[0-9]{0,4},-?[0-9]{0,4})?$"},
    ),
    "quality": _query("quality", "JPEG quality (PS3.18 8.3.5.1.2)",
                      {"type": "integer", "minimum": 1, "maximum": 100, "default": 90}),
    "compression": _query("compression", "PNG only (Tessera's): default deflates; none sends stored deflate "
                                         "blocks with no row filter (2-5x the bytes, far less CPU on both "
                                         "ends), for viewers on a fast network",
                          {"type": "string", "enum": ["default", "none"], "default": "default"}),
    "iccprofile": _query("iccprofile", "only 'no': no ICC profile is embedded", {"type": "string", "enum": ["no"]}),
    "annotation": _query("annotation", "refused with a 400: nothing is burned into rendered images",
                         {"type": "string"}),
    "acceptQuery": _query("accept", "media type of the rendered image, instead of the Accept header",
                          {"type": "string", "enum": list(IMAGE_MEDIA)}),
    "order": _query("order", "order of the parts: interleaved (default: middle, ends, halving the gaps) or "
                             "sequential", {"type": "string", "enum": ["interleaved", "sequential"]}),
    "limit": _query("limit", "at most this many results (default 1000)",
                    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
    "offset": _query("offset", "skip this many results", {"type": "integer", "minimum": 0, "maximum": 2**31}),
    "fuzzymatching": _query("fuzzymatching", "fuzzy matching of person names",
                            {"type": "string", "enum": ["true", "false"]}),
    "includefield": _query(
        "includefield", "attributes to return besides the defaults: keywords or tags, comma-separated, or 'all'",
        {"type": "array", "items": {"type": "string", "pattern": r"^(all|[A-Za-z]{1,64}|[0-9A-Fa-f]{8})$"}},
        style="form", explode=True,
    ),
}


def _p(*names: str) -> list[dict[str, str]]:
    return [{"$ref": f"#/components/parameters/{n}"} for n in names]


_RENDER_QUERY = ("window", "viewport", "quality", "compression", "iccprofile", "annotation", "acceptQuery", "accept", "ifNoneMatch")


def _qido_keys(level: str) -> list[dict[str, Any]]:
    """Matching keys of a QIDO resource at ``level`` (archive.query): this level's and the levels above.

    Tags (8 hex digits) work as well as keywords; repeating a key matches any of its values.
    """
    rank = LEVELS.index(level)
    out = []
    for a in ATTRIBUTES:
        if not a.matchable or LEVELS.index(a.level) > rank:
            continue
        text = {"UI": "UIDs, comma-separated", "DA": "YYYYMMDD or a range with '-'",
                "TM": "HHMMSS.FFFFFF or a range with '-'", "PN": "case-insensitive, * and ? wildcards",
                "IS": "integers, comma-separated", "US": "integers, comma-separated"}.get(a.vr, "* and ? wildcards")
        out.append(_query(a.keyword, f"({a.tag[:4]},{a.tag[4:]}) {a.vr}: {text}",
                          {"type": "array", "items": {"type": "string"}}, style="form", explode=True))
    return out


# --- operations ------------------------------------------------------------------------------------


def _op(op_id: str, summary: str, tag: str, params: list[Any], responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"operationId": op_id, "summary": summary, "tags": [tag], "parameters": params,
            "responses": responses, **extra}


def _guarded(*statuses: int) -> dict[str, Any]:
    """Error responses of a route behind authentication: 401, 403, 414 and 431 plus ``statuses``."""
    return _errors(401, 403, 414, 431, *statuses)


_VALIDATOR_HEADERS = {
    "ETag": {"description": "strong validator", "required": True, "schema": {"type": "string"}},
    "Cache-Control": {"description": "caching policy", "required": True, "schema": {"type": "string"}},
}


def _not_modified() -> dict[str, Any]:
    return {"304": {"description": "If-None-Match matched: the cached representation is current.",
                    "headers": _VALIDATOR_HEADERS}}


def _qido(op_id: str, level: str, scope: tuple[str, ...], summary: str) -> dict[str, Any]:
    params = _p(*scope, "limit", "offset", "fuzzymatching", "includefield", "accept") + _qido_keys(level)
    return _op(op_id, summary, "QIDO-RS", params, {
        "200": {"description": "matches, as DICOM JSON (PS3.18 F)",
                "content": {DICOM_JSON: {"schema": {"type": "array", "items": _ref("Dataset")}}}},
        **_guarded(400, 404, 406),
    })


def _retrieve(op_id: str, scope: tuple[str, ...], summary: str, single: bool) -> dict[str, Any]:
    media = (MULTIPART, "application/dicom") if single else (MULTIPART,)
    return _op(op_id, summary, "WADO-RS", _p(*scope, "accept"), {
        "200": {"description": "the instances: multipart/related of application/dicom parts"
                               + (", or one application/dicom" if single else ""), "content": _media(*media)},
        **_guarded(400, 404, 406, 422),
    })


def _metadata(op_id: str, scope: tuple[str, ...]) -> dict[str, Any]:
    return _op(op_id, "Metadata as DICOM JSON with BulkDataURIs (PS3.18 10.4.1.1.2)", "WADO-RS",
               _p(*scope, "accept"), {
                   "200": {"description": "one dataset per instance",
                           "content": {DICOM_JSON: {"schema": {"type": "array", "items": _ref("Dataset")}}}},
                   **_guarded(400, 404, 406),
               })


def _delete(op_id: str, scope: tuple[str, ...], what: str) -> dict[str, Any]:
    return _op(op_id, f"Delete the {what}: files and index entries", "DELETE", _p(*scope),
               {"204": {"description": "deleted"}, **_guarded(400, 404)})


def _image(op_id: str, summary: str, tag: str, params: list[Any], multipart: bool = False) -> dict[str, Any]:
    media = (*IMAGE_MEDIA, MULTIPART) if multipart else IMAGE_MEDIA
    return _op(op_id, summary, tag, params, {
        "200": {"description": "the rendered image(s)", "content": _media(*media), "headers": _VALIDATOR_HEADERS},
        **_not_modified(),
        **_guarded(400, 404, 406, 422),
    })


def _stow(op_id: str, scope: tuple[str, ...]) -> dict[str, Any]:
    result = {DICOM_JSON: {"schema": _ref("Dataset")}}
    return _op(op_id, "Store instances (STOW-RS, PS3.18 10.5)", "STOW-RS", _p(*scope), {
        "200": {"description": "every instance stored", "content": result},
        "202": {"description": "some stored, some failed (FailedSOPSequence)", "content": result},
        "400": {"description": "nothing stored: the body or every instance is unreadable",
                "content": {**result, JSON: {"schema": _ref("Error")}}},
        "409": {"description": "nothing stored: an instance conflicts or is refused",
                "content": {**result, JSON: {"schema": _ref("Error")}}},
        **_guarded(404, 413, 415),
    }, requestBody={
        "required": True,
        "description": 'multipart/related; type="application/dicom" with a boundary: one DICOM file per part',
        "content": {MULTIPART: {"schema": {"type": "string", "format": "binary"}}},
    })


def _static(op_id: str, summary: str, media: tuple[str, ...], params: list[Any] | None = None) -> dict[str, Any]:
    return _op(op_id, summary, "viewer", [*(params or []), *_p("ifNoneMatch")], {
        "200": {"description": "the file", "content": _media(*media), "headers": _VALIDATOR_HEADERS},
        **_not_modified(),
        **_errors(404, 414, 431),
    }, security=[])


def _paths() -> dict[str, dict[str, Any]]:
    s, r, i = ("study",), ("study", "series"), ("study", "series", "instance")
    render_q = _p(*_RENDER_QUERY)
    paths: dict[str, dict[str, Any]] = {
        "/healthz": {"get": _op("healthz", "Readiness: 200 once kernels are compiled", "operations", [], {
            "200": {"description": "ready", "content": _media("text/plain", schema={"type": "string"})},
            "503": {"description": "starting", "content": _media("text/plain", schema={"type": "string"})},
        }, security=[])},
        "/metrics": {"get": _op("metrics", "Prometheus metrics (text format, or OpenMetrics on request)",
                                "operations", [], {
            "200": {"description": "metrics", "content": _media(
                "text/plain", "application/openmetrics-text", schema={"type": "string"})},
            **_guarded(),
        })},
        "/openapi.json": {"get": _op("openapi", "This document", "operations", [], {
            "200": {"description": "OpenAPI 3.1", "content": {JSON: {"schema": {"type": "object"}}}},
            **_guarded(),
        })},
        "/auth/session": {
            "post": _op("signIn", "Sign in with a token: sets the session cookie", "auth", [], {
                "204": {"description": "signed in; Set-Cookie carries the session"},
                **_errors(400, 401, 403, 413, 414, 415, 429, 431),
            }, security=[], requestBody={"required": True, "content": {JSON: {"schema": {
                "type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}}}}}),
            "delete": _op("signOut", "Sign out: clears the session cookie", "auth", [],
                          {"204": {"description": "signed out"}, **_errors(403, 414, 431)}, security=[]),
        },
        "/auth/whoami": {"get": _op("whoami", "Who the credentials belong to", "auth", [], {
            "200": {"description": "the caller", "content": {JSON: {"schema": _ref("Identity")}}},
            **_errors(401, 414, 431),
        })},
        # Access administration (admin)
        "/api/shares": {
            "post": _op("createShare", "Create a share link to one study, or grant a referrer a study", "access", [], {
                "201": {"description": "the link (its token is shown once) or the grant",
                        "content": {JSON: {"schema": {"oneOf": [_ref("ShareLink"), _ref("Grant")]}}}},
                **_guarded(400, 404, 413),
            }, requestBody={"required": True, "content": {JSON: {"schema": _ref("ShareRequest")}}}),
            "get": _op("listShares", "Share links and referrer grants", "access", [], {
                "200": {"description": "links and grants", "content": {JSON: {"schema": _ref("Shares")}}},
                **_guarded(),
            }),
        },
        "/api/shares/{id}": {"delete": _op(
            "revokeShare", "Revoke a share link", "access",
            [_path("id", "the link's id", {"type": "string", "minLength": 1})],
            {"204": {"description": "revoked"}, **_guarded(404)})},
        "/api/audit": {"get": _op("readAudit", "The audit trail as JSON lines (PS3.15 A.5 fields)", "access", [
            _query("since", "ISO date/time or -<n>[smhd]", {"type": "string"}),
            _query("until", "ISO date/time or -<n>[smhd]", {"type": "string"}),
        ], {
            "200": {"description": "one JSON record per line",
                    "content": _media("application/x-ndjson", schema={"type": "string"})},
            **_guarded(400),
        })},
        # The viewer's static files: public, no patient data.
        "/viewer": {"get": _op("viewerRoot", "Redirects to /viewer/", "viewer", [], {
            "308": {"description": "to /viewer/ (with the query)"},
            "200": {"description": "the page, when the redirect is followed", "content": _media(HTML)},
            **_errors(414, 431),
        }, security=[])},
        "/viewer/": {"get": _static("viewerIndex", "The study list and viewer page", (HTML,))},
        "/viewer/embed": {"get": _static("viewerEmbed", "The viewer alone, for an iframe", (HTML,))},
        "/viewer/{path}": {"get": _static("viewerFile", "A module, stylesheet or icon of the viewer", (
            HTML, "text/javascript", "text/css", "image/svg+xml", "image/png", "image/x-icon", JSON, "text/plain"),
            [_path("path", "a file of the viewer", {"type": "string", "minLength": 1})])},
        # QIDO-RS (PS3.18 10.6)
        ROOT + "/studies": {
            "get": _qido("searchStudies", "study", (), "Search for studies"),
            "post": _stow("storeInstances", ()),
        },
        ROOT + "/series": {"get": _qido("searchSeries", "series", (), "Search for series")},
        ROOT + "/instances": {"get": _qido("searchInstances", "instance", (), "Search for instances")},
        ROOT + "/studies/{study}/series": {"get": _qido("searchStudySeries", "series", s, "Series of a study")},
        ROOT + "/studies/{study}/instances": {
            "get": _qido("searchStudyInstances", "instance", s, "Instances of a study")},
        ROOT + "/studies/{study}/series/{series}/instances": {
            "get": _qido("searchSeriesInstances", "instance", r, "Instances of a series")},
        # WADO-RS, STOW-RS into a study, DELETE
        ROOT + "/studies/{study}": {
            "get": _retrieve("retrieveStudy", s, "Retrieve a study's instances", single=False),
            "post": _stow("storeStudyInstances", s),
            "delete": _delete("deleteStudy", s, "study"),
        },
        ROOT + "/studies/{study}/metadata": {"get": _metadata("studyMetadata", s)},
        ROOT + "/studies/{study}/series/{series}": {
            "get": _retrieve("retrieveSeries", r, "Retrieve a series' instances", single=False),
            "delete": _delete("deleteSeries", r, "series"),
        },
        ROOT + "/studies/{study}/series/{series}/metadata": {"get": _metadata("seriesMetadata", r)},
        INST: {
            "get": _retrieve("retrieveInstance", i, "Retrieve an instance", single=True),
            "delete": _delete("deleteInstance", i, "instance"),
        },
        INST + "/metadata": {"get": _metadata("instanceMetadata", i)},
        INST + "/frames/{frames}": {"get": _op(
            "retrieveFrames", "Frames as stored or native (PS3.18 10.4.1.1.4)", "WADO-RS", _p(*i, "frames", "accept"), {
                "200": {"description": "one frame, or multipart/related for several", "content": _media(*FRAME_MEDIA)},
                **_guarded(400, 404, 406, 422),
            })},
        INST + "/bulkdata/{path}": {"get": _op(
            "retrieveBulkdata", "A binary attribute value (PS3.18 10.4.1.1.5)", "WADO-RS",
            _p(*i, "tagPath", "accept", "range"), {
                "200": {"description": "the value", "content": _media(OCTET, MULTIPART, *FRAME_MEDIA[1:-1])},
                "206": {"description": "the requested byte range", "content": _media(OCTET, MULTIPART)},
                **_guarded(400, 404, 406),
            })},
        # Rendered resources and thumbnails (PS3.18 8.3.5, 10.4.1.1.3; Sup 203)
        ROOT + "/studies/{study}/rendered": {"get": _image(
            "studyRendered", "Every frame of the study rendered, streamed progressively", "rendered",
            _p(*s, "order") + render_q, multipart=True)},
        ROOT + "/studies/{study}/series/{series}/rendered": {"get": _image(
            "seriesRendered", "Every frame of the series rendered, streamed progressively", "rendered",
            _p(*r, "order") + render_q, multipart=True)},
        INST + "/rendered": {"get": _image("instanceRendered", "Frame 1 rendered", "rendered", _p(*i) + render_q)},
        INST + "/frames/{frames}/rendered": {"get": _image(
            "framesRendered", "Frames rendered: one image, or multipart/related for several", "rendered",
            _p(*i, "frames") + render_q, multipart=True)},
        ROOT + "/studies/{study}/thumbnail": {"get": _image(
            "studyThumbnail", "Thumbnail of the study's first series", "thumbnail", _p(*s) + render_q)},
        ROOT + "/studies/{study}/series/{series}/thumbnail": {"get": _image(
            "seriesThumbnail", "Thumbnail of the series: its middle instance", "thumbnail", _p(*r) + render_q)},
        INST + "/thumbnail": {"get": _image(
            "instanceThumbnail", "Thumbnail of the instance: its middle frame", "thumbnail", _p(*i) + render_q)},
        INST + "/frames/{frames}/thumbnail": {"get": _image(
            "frameThumbnail", "Thumbnail of one frame", "thumbnail", _p(*i, "frame") + render_q)},
        INST + "/tiles": {"get": _op(
            "instanceTiles", "Tile pyramid of the instance (non-standard)", "rendered", _p(*i, "ifNoneMatch"), {
                "200": {"description": "the pyramid", "content": {JSON: {"schema": _ref("Tiles")}},
                        "headers": _VALIDATOR_HEADERS},
                **_not_modified(),
                **_guarded(400, 404, 406),
            })},
    }
    return paths


def _components() -> dict[str, Any]:
    element = {
        "type": "object",
        "required": ["vr"],
        "properties": {
            "vr": {"type": "string", "pattern": "^[A-Z]{2}$"},
            "Value": {"type": "array"},
            "BulkDataURI": {"type": "string"},
            "InlineBinary": {"type": "string"},
        },
    }
    count = {"type": "integer", "minimum": 0}
    return {
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer",
                           "description": "API token, share link token or OpenID Connect access token"},
            "sessionCookie": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                              "description": "the viewer's session, from POST /auth/session"},
        },
        "parameters": PARAMETERS,
        "schemas": {
            "Error": {"type": "object", "required": ["error", "status"], "properties": {
                "error": {"type": "string"}, "status": {"type": "integer", "minimum": 400, "maximum": 599}}},
            "Dataset": {"type": "object", "description": "DICOM JSON (PS3.18 F.2): attributes by tag",
                        "patternProperties": {"^[0-9A-F]{8}$": _ref("Element")}, "additionalProperties": False},
            "Element": element,
            "Identity": {"type": "object", "required": ["name", "role"], "properties": {
                "name": {"type": "string"},
                "role": {"type": "string", "enum": ["admin", "radiologist", "uploader", "referrer", "share"]},
                "study": {"type": ["string", "null"], "description": "the one study a share link reads"},
                "expires": {"type": ["number", "null"], "description": "Unix time the credential expires"}}},
            "ShareRequest": {"type": "object", "required": ["study"], "properties": {
                "study": {"type": "string", "pattern": UID_PATTERN, "maxLength": 64},
                "expires_in": {"type": "integer", "minimum": 1, "maximum": 90 * 86400,
                               "description": "seconds the link is valid (default 7 days)"},
                "grantee": {"type": "string", "minLength": 1, "maxLength": 128,
                            "description": "a referrer token's name: grant instead of a link"}}},
            "ShareLink": {"type": "object", "required": ["id", "study", "expires", "token", "url"], "properties": {
                "id": {"type": "string"}, "study": {"type": "string"}, "expires": {"type": "number"},
                "token": {"type": "string"}, "url": {"type": "string"}}},
            "Grant": {"type": "object", "required": ["grantee", "study"], "properties": {
                "grantee": {"type": "string"}, "study": {"type": "string"}}},
            "Shares": {"type": "object", "required": ["links", "grants"], "properties": {
                "links": {"type": "array", "items": {"type": "object", "required": ["id", "study", "expires"]}},
                "grants": {"type": "array", "items": _ref("Grant")}}},
            "Tiles": {"type": "object", "required": ["rows", "columns", "frames", "tile_size", "levels"], "properties": {
                "rows": count, "columns": count, "frames": count, "tile_size": count,
                "levels": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["level", "rows", "columns", "tiles_x", "tiles_y"],
                    "properties": {k: count for k in ("level", "rows", "columns", "tiles_x", "tiles_y")}}}}},
        },
    }


def document() -> dict[str, Any]:
    """The whole OpenAPI document, every route Tessera defines (whether mounted in this app or not)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tessera",
            "version": "1",
            "description": "DICOMweb (PS3.18) archive and rendering server. Every route but /healthz needs "
                           "a bearer token (or the viewer's session cookie). Errors answer "
                           '{"error": message, "status": code}.',
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}, {"sessionCookie": []}],
        "paths": _paths(),
        "components": _components(),
    }


def app_operations(routes: list[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    """(OpenAPI path template, lower-case method) of every route of an application, HEAD excluded."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, Mount) and isinstance(route.app, StaticFiles):
            found.add((prefix + route.path + "/{path}", "get"))  # static files below the mount
        elif isinstance(route, Mount):
            found |= app_operations(list(route.routes), prefix + route.path)
        elif isinstance(route, Route):
            path = (prefix + route.path).replace(":path}", "}")
            found |= {(path, m.lower()) for m in route.methods or () if m != "HEAD"}
    return found


def served_document(routes: list[BaseRoute]) -> dict[str, Any]:
    """``document()`` restricted to the operations ``routes`` really serve."""
    doc = copy.deepcopy(document())
    present = app_operations(routes)
    paths = {}
    for path, ops in doc["paths"].items():
        kept = {m: op for m, op in ops.items() if (path, m) in present}
        if kept:
            paths[path] = kept
    doc["paths"] = paths
    return doc


async def openapi_json(request: Request) -> Response:
    cached = getattr(request.app.state, "openapi_document", None)
    if cached is None:
        cached = served_document(list(request.app.routes))
        request.app.state.openapi_document = cached
    return JSONResponse(cached)


def routes() -> list[Route]:
    return [Route("/openapi.json", openapi_json, methods=["GET"])]
