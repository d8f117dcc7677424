"""Authentication, roles, share links, scope and the audit trail, on a real server started as installed
(no anonymous access), driven over HTTP with httpx and dicomweb-client.

The route x role table is written out here by hand (what each route is, who may call it) and checked
against every route the application declares, so a new route cannot ship unclassified.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from starlette.routing import Mount, Route

from archive.audit import AuditLog
from archive.synth import synth_series
from tests.conftest import Server, make_token, start_server, stop_server
from tests.dicomweb_helpers import part10, stow
from web.app import create_app
from web.settings import Settings

SENTINEL_NAME = "Leakcheck^Sentinel"

# Who may call what: the roles and share links. A referrer and a share link read their study (A).
READ = {"admin", "radiologist", "referrer", "share"}
TABLE: dict[tuple[str, str], set[str]] = {
    ("GET", "/metrics"): {"admin"},
    ("GET", "/openapi.json"): {"admin", "radiologist", "uploader", "referrer"},
    ("GET", "/api/shares"): {"admin"},
    ("POST", "/api/shares"): {"admin"},
    ("DELETE", "/api/shares/{id}"): {"admin"},
    ("GET", "/api/audit"): {"admin"},
    ("POST", "/dicomweb/studies"): {"admin", "uploader"},
    ("POST", "/dicomweb/studies/{study}"): {"admin", "uploader"},
    ("DELETE", "/dicomweb/studies/{study}"): {"admin"},
    ("DELETE", "/dicomweb/studies/{study}/series/{series}"): {"admin"},
    ("DELETE", "/dicomweb/studies/{study}/series/{series}/instances/{instance}"): {"admin"},
}
READ_ROUTES = [
    "/dicomweb/studies", "/dicomweb/series", "/dicomweb/instances", "/dicomweb/studies/{study}/series",
    "/dicomweb/studies/{study}/instances", "/dicomweb/studies/{study}/series/{series}/instances",
    "/dicomweb/studies/{study}", "/dicomweb/studies/{study}/metadata", "/dicomweb/studies/{study}/series/{series}",
    "/dicomweb/studies/{study}/series/{series}/metadata",
    "/dicomweb/studies/{study}/series/{series}/instances/{instance}",
    "/dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata",
    "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
    "/dicomweb/studies/{study}/series/{series}/instances/{instance}/bulkdata/{path:path}",
    "/dicomweb/studies/{study}/rendered", "/dicomweb/studies/{study}/series/{series}/rendered",
    "/dicomweb/studies/{study}/thumbnail", "/dicomweb/studies/{study}/series/{series}/thumbnail",
    "/dicomweb/studies/{study}/series/{series}/instances/{instance}/rendered",
    "/dicomweb/studies/{study}/series/{series}/instances/{instance}/thumbnail",
    "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered",
    "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/thumbnail",
    "/dicomweb/studies/{study}/series/{series}/instances/{instance}/tiles",
]
TABLE.update({("GET", path): READ for path in READ_ROUTES})
PUBLIC = {("GET", "/healthz"), ("GET", "/auth/whoami"), ("POST", "/auth/session"), ("DELETE", "/auth/session")}


def _series(seed: int, slices: int = 3, name: str = "TESSERA^SYNTH") -> list[bytes]:
    return [part10(ds) for ds in synth_series(rows=64, columns=64, slices=slices, seed=seed, patient_name=name)]


@dataclass
class Secured:
    server: Server
    tokens: dict[str, str]  # role -> token
    share: str  # share link token for study A
    share_id: str
    a: tuple[str, str, str]  # study, series, instance of study A (shared with the referrer / link)
    b: tuple[str, str, str]  # study B (shared with nobody)

    def h(self, who: str | None) -> dict[str, str]:
        if who is None:
            return {}
        token = self.share if who == "share" else self.tokens[who]
        return {"Authorization": f"Bearer {token}"}

    def audit(self) -> list[dict]:
        """Every record so far, as exported (with its PS3.15 coding)."""
        return list(AuditLog(self.server.data / "audit").read())


def _uids(blob: bytes) -> tuple[str, str, str]:
    ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    data = tmp_path_factory.mktemp("secured") / "data"
    # Every test here calls from 127.0.0.1, many with bad credentials on purpose: the sign-in limit has
    # its own test and server.
    server = start_server(data, auth=True, env={"TESSERA_SIGNIN_ATTEMPTS_PER_MINUTE": "100000"})
    try:
        a_blobs, b_blobs = _series(1, name=SENTINEL_NAME), _series(2)
        admin = {"Authorization": f"Bearer {server.admin_token}"}
        assert stow(server.url, a_blobs + b_blobs, headers=admin).status_code == 200
        a, b = _uids(a_blobs[0]), _uids(b_blobs[0])
        tokens = {"admin": server.admin_token or ""}
        for role in ("radiologist", "uploader", "referrer"):
            tokens[role] = make_token(data, role, f"test-{role}")
        granted = httpx.post(server.root + "/api/shares", json={"study": a[0], "grantee": "test-referrer"}, headers=admin)
        assert granted.status_code == 201, granted.text
        link = httpx.post(server.root + "/api/shares", json={"study": a[0], "expires_in": 3600}, headers=admin)
        assert link.status_code == 201, link.text
        yield Secured(server, tokens, link.json()["token"], link.json()["id"], a, b)
    finally:
        stop_server(server)


def _concrete(path: str, uids: tuple[str, str, str]) -> str:
    study, series, instance = uids
    return (path.replace("{study}", study).replace("{series}", series).replace("{instance}", instance)
            .replace("{frames}", "1").replace("{path:path}", "7FE00010").replace("{id}", "000000000000"))


def _declared_routes(data: Path) -> set[tuple[str, str]]:
    app = create_app(Settings(data=data, anonymous_role="admin", renditions=False), archive=None)  # type: ignore[arg-type]
    out: set[tuple[str, str]] = set()

    def walk(routes: list, prefix: str) -> None:
        for r in routes:
            if isinstance(r, Mount):
                if r.path == "/viewer":
                    continue  # static files, public
                walk(list(r.routes), prefix + r.path)
            elif isinstance(r, Route):
                for m in r.methods or {"GET"}:
                    if m != "HEAD" and not (prefix + r.path).startswith("/viewer"):
                        out.add((m, prefix + r.path))

    walk(app.router.routes, "")
    return out


def test_every_declared_route_is_in_the_table(tmp_path: Path) -> None:
    declared = _declared_routes(tmp_path)
    assert declared - set(TABLE) - PUBLIC == set(), "routes missing from the role table"
    assert set(TABLE) - declared == set()


@pytest.mark.parametrize("who", ["none", "bad", "admin", "radiologist", "uploader", "referrer", "share"])
def test_routes_by_role(secured: Secured, who: str) -> None:
    """Every route x every role: 401 without (or with bad) credentials, 403 for the wrong role or a
    study outside the caller's scope, and neither for the right role."""
    table = sorted(TABLE.items())
    headers = {} if who == "none" else {"Authorization": "Bearer tsr_t000000000000_nope"} if who == "bad" else secured.h(who)
    with httpx.Client(timeout=30) as client:
        for (method, path), allowed in table:
            if method == "DELETE" and "/dicomweb/" in path:
                uids = ("1.2.3.999", "1.2.3.999.1", "1.2.3.999.2")  # allowed callers get 404: nothing deleted
            else:
                uids = secured.a
            url = secured.server.root + _concrete(path, uids)
            body = b"{}" if path.startswith("/api/") else b"--x--\r\n"
            kw = {"content": body, "headers": {**headers, "Content-Type": "application/json" if path.startswith("/api/")
                                                else 'multipart/related; type="application/dicom"; boundary=x'}} if method == "POST" else {"headers": headers}
            status = client.request(method, url, **kw).status_code
            if who in ("none", "bad"):
                assert status == 401, (method, path, status)
            elif who in allowed:
                assert status not in (401, 403), (who, method, path, status)
            else:
                assert status == 403, (who, method, path, status)


def test_scoped_callers_get_403_outside_their_study(secured: Secured) -> None:
    study, series, instance = secured.b
    for who in ("referrer", "share"):
        for tail in ("", "/metadata", f"/series/{series}/instances/{instance}/rendered", "/thumbnail", "/series"):
            r = httpx.get(f"{secured.server.url}/studies/{study}{tail}", headers=secured.h(who))
            assert r.status_code == 403, (who, tail, r.status_code)
            assert "not shared" in r.json()["error"]


@pytest.mark.parametrize("who", ["referrer", "share"])
def test_scoped_qido_never_lists_other_studies(secured: Secured, who: str) -> None:
    client = DICOMwebClient(secured.server.url, headers=secured.h(who))
    assert {s["0020000D"]["Value"][0] for s in client.search_for_studies()} == {secured.a[0]}
    assert {s["0020000D"]["Value"][0] for s in client.search_for_series()} == {secured.a[0]}
    assert {s["0020000D"]["Value"][0] for s in client.search_for_instances()} == {secured.a[0]}
    assert client.search_for_studies(search_filters={"StudyInstanceUID": secured.b[0]}) == []
    # An admin sees both.
    admin = DICOMwebClient(secured.server.url, headers=secured.h("admin"))
    assert {s["0020000D"]["Value"][0] for s in admin.search_for_studies()} >= {secured.a[0], secured.b[0]}
    # And the share link reads its own study's pixels.
    frames = client.retrieve_instance_frames(*secured.a, frame_numbers=[1])
    assert len(frames) == 1 and len(frames[0]) == 64 * 64 * 2


def test_share_link_stops_when_revoked_or_expired(secured: Secured) -> None:
    admin = secured.h("admin")
    root = secured.server.root
    link = httpx.post(root + "/api/shares", json={"study": secured.a[0], "expires_in": 2}, headers=admin).json()
    other = httpx.post(root + "/api/shares", json={"study": secured.a[0], "expires_in": 3600}, headers=admin).json()
    url = f"{secured.server.url}/studies/{secured.a[0]}/metadata"
    for token in (link["token"], other["token"]):
        assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert httpx.delete(f"{root}/api/shares/{other['id']}", headers=admin).status_code == 204
    deadline = time.monotonic() + 10
    statuses: set[int] = set()
    while time.monotonic() < deadline:
        statuses = {httpx.get(url, headers={"Authorization": f"Bearer {t}"}).status_code for t in (link["token"], other["token"])}
        if statuses == {401}:
            break
        time.sleep(0.2)  # polling until the per-process credential cache (2 s) lets the change through
    assert statuses == {401}
    assert link["url"].endswith(f"/viewer/embed?study={secured.a[0]}#token={link['token']}")


def test_each_access_makes_exactly_one_audit_record(secured: Secured) -> None:
    study, series, instance = secured.a
    cases = [
        ("radiologist", f"/studies/{study}/series/{series}/instances/{instance}/rendered", 200, "render"),
        ("radiologist", "/studies?PatientID=*", 200, "search"),
        ("share", f"/studies/{study}/metadata", 200, "retrieve"),
        ("uploader", f"/studies/{study}/metadata", 403, "retrieve"),
        (None, f"/studies/{study}/metadata", 401, "signin"),
    ]
    for who, tail, status, event in cases:
        before = len(secured.audit())
        r = httpx.get(secured.server.url + tail, headers=secured.h(who))
        assert r.status_code == status
        after = secured.audit()
        assert len(after) == before + 1, (who, tail)
        rec = after[-1]
        assert rec["event"] == event and rec["status"] == status
        assert rec["client"] == "127.0.0.1" and rec["time"].endswith("Z")
        assert rec["path"] == "/dicomweb" + tail.split("?")[0]
        assert rec["dicom"]["EventOutcomeIndicator"] == (0 if status < 400 else 4)
        if who is None:
            assert rec["user"] is None
        else:
            assert rec["role"] == {"share": "share"}.get(who, who) and rec["user"]
        if event in ("render", "retrieve") and status == 200:
            assert rec["studies"] == [study]
        if event == "render":
            assert rec["series"] == [series] and rec["instances"] == [instance]
            assert rec["dicom"]["EventID"]["code"] == "110103"
        if event == "search":
            assert rec["query"] == "PatientID=*" and rec["dicom"]["EventID"]["code"] == "110112"
    # STOW records what it stored.
    blobs = _series(3, slices=2)
    before = len(secured.audit())
    assert stow(secured.server.url, blobs, headers=secured.h("uploader")).status_code == 200
    rec = secured.audit()[before:]
    assert len(rec) == 1 and rec[0]["event"] == "store" and len(rec[0]["instances"]) == 2
    assert rec[0]["dicom"]["EventID"]["code"] == "110104" and rec[0]["dicom"]["EventActionCode"] == "C"


def test_audit_export_cli_and_route(secured: Secured) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "web.cli", "audit", "--since", "1h", "--data", str(secured.server.data)],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    records = [json.loads(line) for line in out]
    assert records and all({"time", "event", "user", "client", "status", "dicom"} <= set(r) for r in records)
    assert subprocess.run(
        [sys.executable, "-m", "web.cli", "audit", "--until", "2000-01-01", "--data", str(secured.server.data)],
        check=True, capture_output=True, text=True).stdout == ""
    r = httpx.get(secured.server.root + "/api/audit?since=-1h", headers=secured.h("admin"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    assert len(r.text.splitlines()) >= len(records)
    assert httpx.get(secured.server.root + "/api/audit?since=yesterday", headers=secured.h("admin")).status_code == 400
    # No route alters the trail: nothing but GET is routed there.
    assert httpx.delete(secured.server.root + "/api/audit", headers=secured.h("admin")).status_code == 405


def test_viewer_session_cookie(secured: Secured) -> None:
    root = secured.server.root
    with httpx.Client(base_url=root) as client:
        assert client.get("/auth/whoami").status_code == 401
        bad = client.post("/auth/session", json={"token": "tsr_t000000000000_wrong"})
        assert bad.status_code == 401
        r = client.post("/auth/session", json={"token": secured.tokens["radiologist"]})
        assert r.status_code == 204
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
        value = r.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        cookies = {"Cookie": f"tessera_session={value}"}
        who = client.get("/auth/whoami", headers=cookies).json()
        assert who["role"] == "radiologist" and who["name"] == "test-radiologist"
        assert client.get(f"/dicomweb/studies/{secured.a[0]}/metadata", headers=cookies).status_code == 200
        # A cross-site form post carrying the cookie is refused even where the role would allow it.
        forged = client.post("/dicomweb/studies", headers={**cookies, "Origin": "https://evil.example"},
                             content=b"x", )
        assert forged.status_code == 403
        assert client.get("/dicomweb/studies", headers={"Cookie": f"tessera_session={value[:-2]}xx"}).status_code == 401
        out = client.delete("/auth/session", headers=cookies)
        assert out.status_code == 204 and "max-age=0" in out.headers["set-cookie"].lower()
        # Signing out ends the session on the server: a copy of the cookie stops working.
        deadline = time.monotonic() + 10
        while client.get("/dicomweb/studies", headers=cookies).status_code != 401:
            assert time.monotonic() < deadline, "a signed-out session still works"
            time.sleep(0.2)  # polling past the per-process credential cache


def test_share_link_signs_in_and_whoami_names_its_study(secured: Secured) -> None:
    r = httpx.get(secured.server.root + "/auth/whoami", headers=secured.h("share"))
    assert r.json()["role"] == "share" and r.json()["study"] == secured.a[0]


def test_failed_sign_ins_are_rate_limited(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", auth=True, env={"TESSERA_SIGNIN_ATTEMPTS_PER_MINUTE": "5"})
    try:
        statuses = [httpx.post(server.root + "/auth/session", json={"token": f"wrong{i}"}).status_code for i in range(7)]
        assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]
        limited = httpx.post(server.root + "/auth/session", json={"token": server.admin_token})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0  # refused before checking
        # A valid bearer token from the same address still works (no lock-out of a clinic behind one NAT).
        assert httpx.get(server.url + "/studies", headers=server.headers()).status_code == 200
        assert httpx.get(server.root + "/healthz").status_code == 200
    finally:
        stop_server(server)


def test_tokens_cli_list_and_revoke(secured: Secured) -> None:
    data = str(secured.server.data)
    token = make_token(secured.server.data, "radiologist", "short-lived")
    listed = subprocess.run([sys.executable, "-m", "web.cli", "token", "list", "--data", data],
                            check=True, capture_output=True, text=True).stdout
    assert "short-lived" in listed and token.split("_", 2)[2] not in listed  # never the secret
    url = secured.server.url + "/studies"
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    subprocess.run([sys.executable, "-m", "web.cli", "token", "revoke", "short-lived", "--data", data], check=True,
                   capture_output=True)
    deadline = time.monotonic() + 10
    while httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code != 401:
        assert time.monotonic() < deadline, "a revoked token still works"
        time.sleep(0.2)  # polling past the per-process credential cache
    expired = make_token(secured.server.data, "radiologist", "expiring", expires="1s")
    deadline = time.monotonic() + 10
    while httpx.get(url, headers={"Authorization": f"Bearer {expired}"}).status_code != 401:
        assert time.monotonic() < deadline, "an expired token still works"
        time.sleep(0.2)


def test_headers_viewer_csp_and_size_limit(secured: Secured) -> None:
    r = httpx.get(secured.server.root + "/healthz")
    assert r.headers["x-content-type-options"] == "nosniff" and "strict-transport-security" not in r.headers
    assert "access-control-allow-origin" not in httpx.get(
        secured.server.url + "/studies", headers={**secured.h("admin"), "Origin": "https://portal.example"}).headers
    viewer = httpx.get(secured.server.root + "/viewer/")
    csp = viewer.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'self'" in csp and "unsafe-inline" not in csp
    huge = httpx.get(secured.server.url + "/studies", headers={**secured.h("admin"), "X-Filler": "a" * 40000})
    assert huge.status_code == 431


def test_anonymous_only_on_loopback(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "web.cli", "serve", "--host", "0.0.0.0", "--port", "1", "--data", str(tmp_path)],
        env={"TESSERA_ANONYMOUS_ROLE": "admin", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert r.returncode == 2 and "loopback" in r.stderr


def test_patient_name_never_in_server_log(secured: Secured) -> None:
    headers = secured.h("admin")
    url = secured.server.url
    httpx.get(url + "/studies", params={"PatientName": "Leakcheck*"}, headers=headers)
    httpx.get(url + "/studies", params={"PatientName": "Leakcheck^Sentinel", "Bogus": "Leakcheck"}, headers=headers)
    stow(url, [b"DICM" + SENTINEL_NAME.encode() * 10], headers=headers)
    assert SENTINEL_NAME.split("^")[0] not in secured.server.log.read_text(errors="replace")


def test_refused_requests_are_audited_and_never_500(secured: Secured) -> None:
    root = secured.server.root
    cases = [
        ("GET", "/dicomweb/studies", {"Cookie": "tessera_session=t1.1.\u00e9".encode()}, None, 401),
        ("POST", "/auth/session", {"Content-Type": "application/json"}, b'{"token": "tsr_t000000000000_\\ud800"}', 401),
        ("GET", "/auth/whoami", {"Authorization": "Bearer junk"}, None, 401),
        ("GET", "/api/audit?since=99999999999d", secured.h("admin"), None, 400),
        ("GET", "/dicomweb/" + "a" * 9000, {}, None, 414),
    ]
    for method, path, headers, body, status in cases:
        before = len(secured.audit())
        r = httpx.request(method, root + path, headers=headers, content=body)
        assert r.status_code == status, (path[:40], r.status_code, r.text[:200])
        records = secured.audit()[before:]
        if status != 414:
            assert len(records) == 1, (path[:40], records)
            assert len(records[0]["path"]) <= 512
    # Anonymous access, when configured, is for this machine's own callers, not through a proxy.
    assert httpx.get(root + "/dicomweb/studies", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 401


def test_access_store_is_private(secured: Secured) -> None:
    for name in ("access.sqlite", "access.sqlite-wal"):
        path = secured.server.data / name
        if path.exists():
            assert path.stat().st_mode & 0o077 == 0, name
    assert (secured.server.data / "audit").stat().st_mode & 0o077 == 0
