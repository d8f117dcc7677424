"""OpenID Connect access tokens against a real JWKS endpoint, HTTPS with HSTS, and CORS, each on a real
server on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.conftest import SERVER_LOGS, Server, free_port, start_server, stop_server

AUDIENCE = "tessera"


class Issuer:
    """An OpenID provider's discovery document and JWKS, served over HTTP on 127.0.0.1."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid="k1", use="sig", alg="RS256")
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks.json"}
                elif self.path == "/jwks.json":
                    body = {"keys": [jwk]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def token(self, key: Any = None, kid: str = "k1", alg: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 300,
                "preferred_username": "dr-oidc", **claims}
        return jwt.encode(body, key or self.key, algorithm=alg, headers={"kid": kid})


@pytest.fixture(scope="module")
def oidc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Issuer]]:
    issuer = Issuer()
    env = {"TESSERA_OIDC_ISSUER": issuer.url, "TESSERA_OIDC_AUDIENCE": AUDIENCE,
           "TESSERA_OIDC_ROLES_CLAIM": "realm_access.roles", "TESSERA_SIGNIN_ATTEMPTS_PER_MINUTE": "100000"}
    server = start_server(tmp_path_factory.mktemp("oidc") / "data", auth=True, env=env)
    try:
        yield server, issuer
    finally:
        stop_server(server)
        issuer.httpd.shutdown()
        issuer.httpd.server_close()


def _get(server: Server, path: str, token: str) -> int:
    return httpx.get(server.root + path, headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code


def test_oidc_roles_from_the_configured_claim(oidc: tuple[Server, Issuer]) -> None:
    server, issuer = oidc
    radiologist = issuer.token(realm_access={"roles": ["offline_access", "radiologist"]})
    assert _get(server, "/dicomweb/studies", radiologist) == 200
    assert _get(server, "/metrics", radiologist) == 403
    who = httpx.get(server.root + "/auth/whoami", headers={"Authorization": f"Bearer {radiologist}"}).json()
    assert who["name"] == "dr-oidc" and who["role"] == "radiologist"
    admin = issuer.token(realm_access={"roles": ["radiologist", "admin"]})
    assert _get(server, "/metrics", admin) == 200
    # Authenticated but holding none of our roles: 403, not 401.
    assert _get(server, "/dicomweb/studies", issuer.token(realm_access={"roles": ["viewer"]})) == 403


@pytest.mark.parametrize("case", ["expired", "audience", "issuer", "foreign key", "hs256", "garbage"])
def test_oidc_refuses_bad_tokens(oidc: tuple[Server, Issuer], case: str) -> None:
    server, issuer = oidc
    roles = {"realm_access": {"roles": ["admin"]}}
    now = int(time.time())
    token = {
        "expired": lambda: issuer.token(exp=now - 120, **roles),
        "audience": lambda: issuer.token(aud="someone-else", **roles),
        "issuer": lambda: issuer.token(iss="http://127.0.0.1:1", **roles),
        "foreign key": lambda: issuer.token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048), **roles),
        # The classic confusion: an HMAC token keyed with the public key must not pass.
        "hs256": lambda: jwt.api_jws.PyJWS().encode(
            json.dumps({"iss": issuer.url, "aud": AUDIENCE, "sub": "x", "exp": now + 300, **roles}).encode(),
            b"a-shared-secret-guessed-by-someone", algorithm="HS256", headers={"kid": "k1"}),
        "garbage": lambda: "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl",
    }[case]()
    assert _get(server, "/dicomweb/studies", token) == 401


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_with_hsts(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    port = free_port()
    log = tmp_path / "tls.log"
    SERVER_LOGS.append(log)
    cmd = [sys.executable, "-m", "web.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--data",
           str(tmp_path / "data"), "--workers", "1", "--tls-cert", str(cert), "--tls-key", str(key)]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    try:
        url = f"https://127.0.0.1:{port}"
        tls = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                r = httpx.get(url + "/healthz", verify=tls, timeout=2)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "TLS server did not start"
            time.sleep(0.05)  # polling the health endpoint with a deadline
        assert r.headers["strict-transport-security"].startswith("max-age=")
        assert httpx.get(url + "/dicomweb/studies", verify=tls).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cors_only_for_configured_origins(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", auth=True, env={"TESSERA_CORS_ORIGINS": "https://portal.example.org"})
    try:
        pre = httpx.options(server.url + "/studies", headers={
            "Origin": "https://portal.example.org", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://portal.example.org"
        ok = httpx.get(server.url + "/studies", headers={**server.headers(), "Origin": "https://portal.example.org"})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://portal.example.org"
        other = httpx.get(server.url + "/studies", headers={**server.headers(), "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    finally:
        stop_server(server)


def test_oidc_referrer_grants_are_their_own_namespace(oidc: tuple[Server, Issuer]) -> None:
    from archive.synth import synth_series
    from tests.dicomweb_helpers import part10, stow

    server, issuer = oidc
    ds = next(iter(synth_series(rows=32, columns=32, slices=1, seed=5)))
    assert stow(server.url, [part10(ds)], headers=server.headers()).status_code == 200
    study = ds.StudyInstanceUID
    referrer = issuer.token(realm_access={"roles": ["referrer"]})
    search = server.url + "/studies"

    def visible() -> list:
        return httpx.get(search, headers={"Authorization": f"Bearer {referrer}"}).json()

    # A grant to an API-token holder of the same name is not the OIDC user's.
    r = httpx.post(server.root + "/api/shares", json={"study": study, "grantee": "dr-oidc"}, headers=server.headers())
    assert r.status_code == 201 and visible() == []
    httpx.post(server.root + "/api/shares", json={"study": study, "grantee": "oidc:dr-oidc"}, headers=server.headers())
    deadline = time.monotonic() + 10
    while not visible():
        assert time.monotonic() < deadline, "the OIDC referrer's grant never took effect"
        time.sleep(0.2)  # polling past the per-process credential cache
    assert [s["0020000D"]["Value"][0] for s in visible()] == [study]
