"""Authentication, authorisation and auditing at the edge of every request.

``SecurityMiddleware`` (outermost but for CORS) finds who is calling: a bearer API token or share link
(``archive.access``), an OpenID Connect access token (a JWT checked against the issuer's JWKS), the
signed session cookie the viewer gets from ``POST /auth/session``, or, when explicitly configured on a
loopback bind, an anonymous role. No caller: 401 before routing, so unknown paths reveal nothing.
It also adds the security headers (CSP on the viewer, HSTS on TLS) and limits header size.

``protect`` wraps every route with its action from ``action_for`` (search, retrieve, render, store,
delete, ...), checks the caller's role against ``ROLE_ACTIONS`` (403) and a scoped caller's study
(referrer, share link: 403 outside it), and appends exactly one audit record per request, with the
outcome, when the response is done. Must not hold domain logic: scope reaches queries as a study set.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
import urllib.request
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.routing import BaseRoute, Mount, Route

from archive.access import ROLES, SHARE_ROLE, AccessStore, Principal
from archive.audit import AuditLog, AuditRecord
from web.settings import Settings, is_loopback

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: What each role may do. ``share`` is a share link's role: its study only, like a referrer's grants.
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({"search", "retrieve", "render", "store", "delete", "share", "audit", "describe", "monitor"}),
    "radiologist": frozenset({"search", "retrieve", "render", "describe"}),
    "uploader": frozenset({"store", "describe"}),
    "referrer": frozenset({"search", "retrieve", "render", "describe"}),
    SHARE_ROLE: frozenset({"search", "retrieve", "render"}),
}
#: Paths anyone may reach: liveness, the viewer's static shell (no patient data) and sign-in itself.
PUBLIC_EXACT = frozenset({"/healthz", "/auth/session", "/auth/whoami", "/viewer"})
PUBLIC_PREFIX = "/viewer/"
SESSION_COOKIE = "tessera_session"
_QIDO_LEAVES = ("/studies", "/series", "/instances")
_MAX_LOGGED = 512  # characters of a path or query kept in an audit record (UIDs fit many times over)
_MAX_URL = 8192  # longest path + query string served (414 above): no DICOMweb URL comes near it
_JWT_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"]


def action_for(method: str, path: str) -> str:
    """The audited action of a route (its path template as declared, including its mount)."""
    if path == "/metrics":
        return "monitor"
    if path == "/openapi.json":
        return "describe"
    if path.startswith("/api/shares"):
        return "share"
    if path.startswith("/api/audit"):
        return "audit"
    if method == "POST":
        return "store"
    if method == "DELETE":
        return "delete"
    if path.endswith(("/rendered", "/thumbnail", "/tiles")):
        return "render"
    if path.endswith(_QIDO_LEAVES):
        return "search"
    return "retrieve"


class FailureLimiter:
    """Failed sign-ins per client address in a sliding window; over the limit, refuse until it slides.

    Per process: with N workers a client gets at most N times the limit, still a brute-force bound.
    """

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._fails: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again (0 = now)."""
        fails = self._fails.get(client)
        if not fails:
            return 0.0
        now = time.monotonic()
        while fails and fails[0] <= now - self.window:
            fails.popleft()
        if len(fails) < self.limit:
            return 0.0
        return max(0.0, fails[0] + self.window - now)

    def fail(self, client: str) -> None:
        fails = self._fails.get(client)
        if fails is None:
            if len(self._fails) >= 10000:
                self._fails.popitem(last=False)  # bounded memory: forget the least recent address
            fails = self._fails[client] = deque(maxlen=self.limit)
        self._fails.move_to_end(client)
        fails.append(time.monotonic())


class SessionCodec:
    """Session cookies: ``<session id>.<HMAC-SHA256 of it>``. The session lives server-side
    (``AccessStore.create_session``): signing out ends it, and revoking its token or share link ends
    it too, since the credential is re-checked on use."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def encode(self, session_id: str) -> str:
        return session_id + "." + self._sign(session_id)

    def decode(self, value: str) -> str | None:
        """The session id of a well-signed cookie value, else None."""
        session_id, _, sig = value.rpartition(".")
        if not sig or not value.isascii() or len(value) > 200 or not hmac.compare_digest(sig, self._sign(session_id)):
            return None
        return session_id

    def _sign(self, body: str) -> str:
        mac = hmac.new(self.key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")


class OidcVerifier:
    """OpenID Connect access tokens: signature from the issuer's JWKS, ``iss``, ``aud``, ``exp``; the
    role is the most privileged of ours found in the configured claim (a dotted path)."""

    def __init__(self, issuer: str, audience: str, jwks_url: str, roles_claim: str, name_claim: str,
                 store: AccessStore) -> None:
        import jwt

        self.issuer, self.audience = issuer, audience
        self.roles_claim, self.name_claim, self.store = roles_claim, name_claim, store
        self._jwt = jwt
        self._jwks_url = jwks_url
        self._client: Any = None

    def _keys(self) -> Any:
        if self._client is None:
            url = self._jwks_url
            if not url:
                discovery = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
                with urllib.request.urlopen(discovery, timeout=10) as resp:
                    url = json.load(resp)["jwks_uri"]
            self._client = self._jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=10)
        return self._client

    def verify(self, token: str) -> Principal | None:
        """The caller, or None when the token is not valid. Blocking (may fetch the JWKS)."""
        try:
            key = self._keys().get_signing_key_from_jwt(token).key
            claims = self._jwt.decode(
                token, key, algorithms=_JWT_ALGORITHMS, audience=self.audience, issuer=self.issuer,
                options={"require": ["exp", "iss", "sub", "aud"]}, leeway=30,
            )
        except (self._jwt.PyJWTError, OSError, KeyError, ValueError) as exc:
            log.info("OIDC token refused: %s", type(exc).__name__)
            return None
        value: Any = claims
        for part in self.roles_claim.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        granted = {value} if isinstance(value, str) else set(value) if isinstance(value, list) else set()
        role = next((r for r in ROLES if r in granted), "")
        name = str(claims.get(self.name_claim) or claims["sub"])[:128]
        # Grants to OIDC users are named "oidc:<name>", apart from API-token names, so an identity
        # provider's user cannot take over a token holder's grants by picking the same name.
        studies = self.store.granted_studies("oidc:" + name) if role == "referrer" else None
        return Principal(name, role, "oidc", "oidc:" + str(claims["sub"])[:64], studies, float(claims["exp"]))


class AuthError(Exception):
    def __init__(self, status: int, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


class Authenticator:
    """Turns request credentials into a Principal; resolved credentials are cached for
    ``cache_seconds`` per process (so a revoked token stops working within that time)."""

    def __init__(self, store: AccessStore, settings: Settings, io: Callable[..., Awaitable[Any]]) -> None:
        self.store, self.settings, self.io = store, settings, io
        self.sessions = SessionCodec(store.session_key)
        self.limiter = FailureLimiter(settings.signin_attempts_per_minute)
        self.oidc: OidcVerifier | None = None
        self._oidc_pool: ThreadPoolExecutor | None = None
        if settings.oidc_issuer:
            self.oidc = OidcVerifier(settings.oidc_issuer, settings.oidc_audience, settings.oidc_jwks_url,
                                     settings.oidc_roles_claim, settings.oidc_name_claim, store)
            # Its own thread: an identity provider that is slow or down holds this one, never the I/O
            # pool that index queries and file reads of every other caller go through.
            self._oidc_pool = ThreadPoolExecutor(1, thread_name_prefix="tessera-oidc")
        role = settings.anonymous_role
        self.anonymous = (Principal("anonymous", role, "anonymous", studies=frozenset() if role == "referrer" else None)
                          if role else None)
        self._cache: dict[tuple[str, str], tuple[Principal | None, float]] = {}

    async def _cached(self, key: tuple[str, str], lookup: Callable[[], Awaitable[Principal | None]]) -> Principal | None:
        """``lookup()``'s caller, reused for ``auth_cache_seconds``; None once the credential expired."""
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            principal = hit[0]
        else:
            principal = await lookup()
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[key] = (principal, now + self.settings.auth_cache_seconds)
        if principal is not None and principal.expires is not None and principal.expires <= time.time():
            return None
        return principal

    async def resolve_token(self, token: str) -> Principal | None:
        async def lookup() -> Principal | None:
            if token.startswith("tsr_"):
                principal: Principal | None = await self.io(self.store.resolve, token)
                return principal
            if self.oidc is not None and self._oidc_pool is not None and token.count(".") == 2:
                return await asyncio.get_running_loop().run_in_executor(self._oidc_pool, self.oidc.verify, token)
            return None

        return await self._cached(("token", token), lookup)

    async def resolve_session(self, cookie: str) -> Principal | None:
        session_id = self.sessions.decode(cookie)
        if session_id is None:
            return None
        return await self._cached(("session", session_id), lambda: self.io(self.store.resolve_session, session_id))

    def forget(self, cookie: str) -> None:
        """Drop a signed-out session from this process's cache at once."""
        session_id = self.sessions.decode(cookie)
        if session_id is not None:
            self._cache.pop(("session", session_id), None)

    def close(self) -> None:
        if self._oidc_pool is not None:
            self._oidc_pool.shutdown(wait=False, cancel_futures=True)

    async def authenticate(self, headers: dict[bytes, bytes], client: str) -> tuple[Principal | None, str]:
        """(caller, how) from the request headers; (None, "") when there are no credentials at all.

        Raises AuthError(401) for credentials that are not valid. Only ``POST /auth/session`` counts
        failures towards the sign-in limit: bearer tokens are 256-bit secrets or signed JWTs, out of
        reach of guessing, and counting them would let anyone lock every user behind one NAT address
        out of signing in."""
        auth = headers.get(b"authorization")
        cookie = _cookie(headers.get(b"cookie", b""), SESSION_COOKIE)
        if auth is None and cookie is None:
            # Anonymous access is for callers on this machine only: not through a proxy.
            if self.anonymous is not None and is_loopback(client) and b"x-forwarded-for" not in headers:
                return self.anonymous, "anonymous"
            return None, ""
        if auth is not None:
            scheme, _, token = auth.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError(401, "Authorization must be 'Bearer <token>'")
            principal = await self.resolve_token(token.strip())
            how = "bearer"
        else:
            assert cookie is not None
            principal = await self.resolve_session(cookie)
            how = "cookie"
        if principal is None:
            raise AuthError(401, "the credentials are not valid (unknown, expired or revoked)")
        return principal, how


def _cookie(raw: bytes, name: str) -> str | None:
    for part in raw.decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def new_record(scope: Scope, event: str, principal: Principal | None, status: int = 0) -> AuditRecord:
    params = scope.get("path_params") or {}
    qs = scope.get("query_string", b"").decode("latin-1")
    return AuditRecord(
        event=event,
        status=status,
        user=principal.name if principal else None,
        role=principal.role if principal else None,
        credential=principal.credential_id or None if principal else None,
        client=client_address(scope),
        method=scope.get("method", ""),
        path=scope.get("path", "")[:_MAX_LOGGED],
        studies=[params["study"]] if "study" in params else [],
        series=[params["series"]] if "series" in params else [],
        instances=[params["instance"]] if "instance" in params else [],
        query=qs[:_MAX_LOGGED] if event == "search" and qs else None,
    )


def note_access(scope: Scope, *, studies: Iterable[str] = (), series: Iterable[str] = (),
                instances: Iterable[str] = ()) -> None:
    """Add UIDs a handler learned (e.g. what STOW stored) to this request's audit record."""
    record: AuditRecord | None = scope.get("tessera.audit")
    if record is None:
        return
    record.studies.extend(sorted(set(studies) - set(record.studies)))
    record.series.extend(sorted(set(series) - set(record.series)))
    record.instances.extend(instances)


async def _json_reply(send: Send, status: int, message: str, extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"error": message, "status": status}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SecurityMiddleware:
    """Authenticates every non-public request and adds security headers to every response."""

    def __init__(self, app: ASGIApp, *, auth: Authenticator, audit: AuditLog, settings: Settings) -> None:
        self.app, self.auth, self.audit, self.settings = app, auth, audit, settings
        viewer_csp = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                      "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors ")
        self._viewer_csp = (viewer_csp + "'self'").encode()
        self._embed_csp = (viewer_csp + (settings.frame_ancestors or "'self'")).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers: dict[bytes, bytes] = {}
        size = 0
        for key, value in scope["headers"]:
            size += len(key) + len(value) + 4
            headers[key] = value
        send = self._with_headers(scope, path, send)
        if size > self.settings.max_header_bytes:
            await _json_reply(send, 431, f"request headers are {size} bytes; the limit is "
                                         f"{self.settings.max_header_bytes}")
            return
        if len(path) + len(scope.get("query_string", b"")) > _MAX_URL:
            await _json_reply(send, 414, f"the URL is longer than {_MAX_URL} characters")
            return
        public = is_public(path)
        client = client_address(scope)
        try:
            principal, how = await self.auth.authenticate(headers, client)
        except AuthError as exc:
            # Refused credentials are audited even on public paths (a probe of /auth/whoami counts).
            self._deny(scope, exc.status, str(exc))
            if not public:
                await _json_reply(send, exc.status, str(exc),
                                  [(b"www-authenticate", b'Bearer realm="tessera", error="invalid_token"')])
                return
            principal, how = None, ""
        if principal is None and not public:
            self._deny(scope, 401, "no credentials")
            await _json_reply(send, 401, "authentication required: send 'Authorization: Bearer <token>' or sign in",
                              [(b"www-authenticate", b'Bearer realm="tessera"')])
            return
        if how == "cookie" and scope["method"] not in ("GET", "HEAD", "OPTIONS") and not self._same_origin(headers):
            # SameSite=Strict already keeps the cookie off cross-site requests; this is the second lock.
            self._deny(scope, 403, "cross-origin request with a session cookie", principal)
            await _json_reply(send, 403, "cross-origin request with a session cookie refused")
            return
        scope["tessera.principal"] = principal
        await self.app(scope, receive, send)

    def _deny(self, scope: Scope, status: int, detail: str, principal: Principal | None = None) -> None:
        record = new_record(scope, "signin", principal, status)
        record.detail = detail
        self.audit.append(record)

    def _same_origin(self, headers: dict[bytes, bytes]) -> bool:
        """Whether a browser request comes from our own origin (TESSERA_PUBLIC_URL when set, behind a
        proxy that rewrites Host; else the Host header)."""
        origin = headers.get(b"origin")
        if origin is None:
            return True  # not a browser cross-origin request (browsers send Origin on unsafe methods)
        if self.settings.public_url:
            return origin.decode("latin-1").rstrip("/") == self.settings.public_url.rstrip("/")
        return origin.split(b"://", 1)[-1] == headers.get(b"host", b"")

    def _with_headers(self, scope: Scope, path: str, send: Send) -> Send:
        extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
        if scope.get("scheme") == "https":
            extra.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
        if path == "/viewer" or path.startswith(PUBLIC_PREFIX):
            csp = self._embed_csp if path.startswith("/viewer/embed") else self._viewer_csp
            extra += [(b"content-security-policy", csp), (b"permissions-policy", b"camera=(), microphone=(), geolocation=()")]
            if not path.startswith("/viewer/embed"):
                extra.append((b"x-frame-options", b"SAMEORIGIN"))

        async def wrapped(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        return wrapped


def guard(app: ASGIApp, actions: dict[str, str], audit: AuditLog) -> ASGIApp:
    """``app`` behind the role and scope checks of ``actions`` (method -> action), audited."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        principal: Principal | None = scope.get("tessera.principal")
        action = actions.get(scope["method"], "retrieve")
        record = new_record(scope, action, principal)
        status = 500
        try:
            if principal is None:
                status = 401
                await _json_reply(send, 401, "authentication required")
                return
            if action not in ROLE_ACTIONS.get(principal.role, frozenset()):
                status = 403
                role = principal.role or "no role"
                await _json_reply(send, 403, f"role {role!r} may not {action} here")
                return
            study = (scope.get("path_params") or {}).get("study")
            if study is not None and not principal.may_read(study):
                status = 403
                await _json_reply(send, 403, "this study is not shared with you")
                return
            scope["tessera.audit"] = record
            started = False

            async def capture(message: MutableMapping[str, Any]) -> None:
                nonlocal status, started
                if message["type"] == "http.response.start":
                    status, started = message["status"], True
                await send(message)

            try:
                await app(scope, receive, capture)
            except BaseException:
                # A stream that failed after its status went out is not a success.
                record.detail = "aborted after the response started" if started else "failed"
                if not started:
                    status = 500
                raise
        finally:
            record.status = status
            audit.append(record)

    return guarded


def protect(routes: list[BaseRoute], audit: AuditLog, prefix: str = "") -> None:
    """Wrap every Route (recursing into Mounts) with ``guard``, except the public ones."""
    for route in routes:
        if isinstance(route, Mount):
            protect(list(route.routes), audit, prefix + route.path)
        elif isinstance(route, Route):
            full = prefix + route.path
            if is_public(full):
                continue
            actions = {m: action_for(m, full) for m in (route.methods or {"GET"})}
            route.app = guard(route.app, actions, audit)


def is_public(path: str) -> bool:
    """Paths reachable without credentials: the middleware lets them through, ``protect`` skips them."""
    return path in PUBLIC_EXACT or path.startswith(PUBLIC_PREFIX)

