"""Sign-in and access administration routes.

- ``POST /auth/session`` (JSON ``{"token": ...}``): a Tessera token or share link becomes an HttpOnly,
  SameSite=Strict session cookie for the viewer; ``DELETE /auth/session`` signs out; ``GET
  /auth/whoami`` says who the caller is. Failed sign-ins count towards the per-address limit (429).
- ``/api/shares`` (admin): create a share link (signed, expiring, revocable, one study) or grant a
  referrer a study; list them; ``DELETE /api/shares/{id}`` revokes a link.
- ``/api/audit`` (admin): the audit trail as JSON lines, ``since``/``until`` like ``tessera audit``.

Must not decide who may do what: web/auth.py's guard does, before these handlers run.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from archive.access import Principal
from archive.audit import parse_when
from archive.errors import NotFound
from archive.parse import UID_RE
from web.auth import SESSION_COOKIE, client_address, new_record, note_access
from web.errors import BadRequest, PayloadTooLarge, error_response

_MAX_BODY = 16 << 10
_MAX_SHARE_SECONDS = 90 * 86400


async def _json_body(request: Request) -> dict[str, Any]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY:
            raise PayloadTooLarge(f"request body is over {_MAX_BODY} bytes")
    try:
        value = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("request body must be a JSON object") from None
    if not isinstance(value, dict):
        raise BadRequest("request body must be a JSON object")
    return value


def _whoami(principal: Principal) -> dict[str, Any]:
    study = next(iter(principal.studies)) if principal.role == "share" and principal.studies else None
    return {"name": principal.name, "role": principal.role, "study": study, "expires": principal.expires}


async def create_session(request: Request) -> Response:
    from web.app import runtime

    rt = runtime(request)
    auth = rt.authenticator
    client = client_address(request.scope)
    record = new_record(request.scope, "signin", None)
    wait = auth.limiter.retry_after(client)
    try:
        if wait:
            record.status = 429
            return error_response(429, "too many failed sign-in attempts; try again later",
                                  {"Retry-After": str(int(wait) + 1)})
        token = (await _json_body(request)).get("token")
        principal = await auth.resolve_token(token.strip()) if isinstance(token, str) and token.strip() else None
        if principal is None or principal.credential_id[:1] not in ("t", "s"):
            auth.limiter.fail(client)
            record.status = 401
            return error_response(401, "the token is not valid (unknown, expired or revoked)")
        record.user, record.role, record.credential = principal.name, principal.role, principal.credential_id
        lifetime = rt.settings.session_seconds
        expires = time.time() + lifetime
        if principal.expires is not None:
            expires = min(expires, principal.expires)
        session_id = await rt.io(rt.access.create_session, principal.credential_id, expires)
        response = Response(status_code=204)
        response.set_cookie(
            SESSION_COOKIE, auth.sessions.encode(session_id), max_age=int(expires - time.time()),
            path="/", httponly=True, samesite="strict", secure=True,
        )
        record.status = 204
        return response
    except (BadRequest, PayloadTooLarge) as exc:
        record.status = 413 if isinstance(exc, PayloadTooLarge) else 400
        raise
    finally:
        rt.audit.append(record)


async def delete_session(request: Request) -> Response:
    from web.app import runtime

    rt = runtime(request)
    principal: Principal | None = request.scope.get("tessera.principal")
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        # The session ends on the server, not only in this browser: a copied cookie stops working.
        session_id = rt.authenticator.sessions.decode(cookie)
        if session_id is not None:
            await rt.io(rt.access.end_session, session_id)
        rt.authenticator.forget(cookie)
    rt.audit.append(new_record(request.scope, "signout", principal, 204))
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=True)
    return response


async def whoami(request: Request) -> Response:
    principal: Principal | None = request.scope.get("tessera.principal")
    if principal is None:
        return error_response(401, "not signed in", {"WWW-Authenticate": 'Bearer realm="tessera"'})
    return JSONResponse(_whoami(principal), headers={"Cache-Control": "no-store"})


async def create_share(request: Request) -> Response:
    """Body ``{"study": UID, "expires_in": seconds}`` for a link, or ``{"study": UID, "grantee": name}``."""
    from web.app import runtime

    rt = runtime(request)
    principal: Principal = request.scope["tessera.principal"]
    body = await _json_body(request)
    study = body.get("study")
    if not isinstance(study, str) or len(study) > 64 or not UID_RE.match(study):
        raise BadRequest("study: must be a Study Instance UID (digits and dots, at most 64 characters)")
    note_access(request.scope, studies={study})
    await rt.io(rt.archive.index.instances, study)  # NotFound (404) for a study the archive does not hold
    grantee = body.get("grantee")
    if grantee is not None:
        if not isinstance(grantee, str) or not 0 < len(grantee) <= 128:
            raise BadRequest("grantee: must be the name of a referrer token, 1 to 128 characters")
        await rt.io(rt.access.grant, grantee, study, principal.name)
        return JSONResponse({"grantee": grantee, "study": study}, status_code=201)
    expires_in = body.get("expires_in", 7 * 86400)
    if not isinstance(expires_in, int) or isinstance(expires_in, bool) or not 0 < expires_in <= _MAX_SHARE_SECONDS:
        raise BadRequest(f"expires_in: must be whole seconds from 1 to {_MAX_SHARE_SECONDS}")
    link, token = await rt.io(rt.access.create_share_link, study, principal.name, float(expires_in))
    root = str(request.base_url).rstrip("/") if not rt.settings.public_url else rt.settings.public_url.rstrip("/")
    return JSONResponse(
        {"id": link.id, "study": study, "expires": link.expires, "token": token,
         "url": f"{root}/viewer/embed?study={study}#token={token}"},
        status_code=201, headers={"Cache-Control": "no-store"},
    )


async def list_shares(request: Request) -> Response:
    from web.app import runtime

    rt = runtime(request)
    links = await rt.io(rt.access.list_share_links)
    grants = await rt.io(rt.access.list_grants)
    return JSONResponse({
        "links": [{"id": s.id, "study": s.study_uid, "created_by": s.created_by, "created": s.created,
                   "expires": s.expires, "revoked": s.revoked} for s in links],
        "grants": [{"grantee": g, "study": s} for g, s in grants],
    })


async def revoke_share(request: Request) -> Response:
    from web.app import runtime

    rt = runtime(request)
    link_id = request.path_params["id"]
    if not await rt.io(rt.access.revoke_share_link, link_id[:64]):
        raise NotFound(f"share link {link_id[:64]!r} not found or already revoked")
    return Response(status_code=204)


async def read_audit(request: Request) -> Response:
    from web.app import runtime

    rt = runtime(request)
    bounds = {}
    for name in ("since", "until"):
        raw = request.query_params.get(name)
        if raw:
            try:
                bounds[name] = parse_when(raw)
            except ValueError:
                raise BadRequest(f"{name}: {raw[:40]!r} is not an ISO date/time or -<n>[smhd]") from None
    unknown = set(request.query_params) - {"since", "until"}
    if unknown:
        raise BadRequest(f"unknown parameter {min(unknown)[:40]!r}: only since and until are allowed")
    records = await rt.io(lambda: list(rt.audit.read(bounds.get("since"), bounds.get("until"))))

    async def lines():  # type: ignore[no-untyped-def]
        for rec in records:
            yield json.dumps(rec, separators=(",", ":")) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def routes() -> list[Route]:
    return [
        Route("/auth/session", create_session, methods=["POST"]),
        Route("/auth/session", delete_session, methods=["DELETE"]),
        Route("/auth/whoami", whoami, methods=["GET"]),
        Route("/api/shares", create_share, methods=["POST"]),
        Route("/api/shares", list_shares, methods=["GET"]),
        Route("/api/shares/{id}", revoke_share, methods=["DELETE"]),
        Route("/api/audit", read_audit, methods=["GET"]),
    ]
