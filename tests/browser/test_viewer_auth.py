"""The viewer against a server with authentication on (issue 7's contract with issue 6): the sign-in
form, ``/viewer/#token=`` sign-in, signing out, and embed mode in a cross-origin iframe with a share
link's token sent as a bearer header (no cookie), scoped to its one study.
"""

from __future__ import annotations

import contextlib
import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import ViewerData, load_viewer_data
from tests.conftest import Server, free_port, start_server, stop_server

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

# The portal: a page on another origin and site (localhost, not 127.0.0.1) served by a tiny HTTP server
# on loopback (an intercepted, unresolved host would count as a public page, and Chromium blocks public
# pages from framing loopback ones).
PORTAL_PORT = free_port()
PORTAL = f"http://localhost:{PORTAL_PORT}"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, ViewerData]]:
    data_dir = tmp_path_factory.mktemp("viewer-auth") / "data"
    srv = start_server(data_dir, env={"TESSERA_RENDITIONS": "0", "TESSERA_FRAME_ANCESTORS": PORTAL}, auth=True)
    try:
        data = load_viewer_data(srv.url, srv.headers())
        yield srv, data
    finally:
        stop_server(srv)


def share_token(srv: Server, study: str) -> str:
    out = subprocess.run([sys.executable, "-m", "web.cli", "share", "link", "--study", study, "--data", str(srv.data)],
                         check=True, capture_output=True, text=True).stdout
    url = out.strip().splitlines()[-1]
    assert "#token=" in url, out
    return url.split("#token=", 1)[1]


@contextlib.contextmanager
def portal(html: str) -> Iterator[str]:
    body = html.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", PORTAL_PORT), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{PORTAL}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def context(auth_server: tuple[Server, ViewerData], browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 720})
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


def test_sign_in_form_then_sign_out(auth_server: tuple[Server, ViewerData], context: Any) -> None:
    srv, _data = auth_server
    page = context.new_page()
    page.goto(f"{srv.root}/viewer/")
    form = page.locator("form.signin")
    form.wait_for()
    page.fill("form.signin input[name=token]", "not-a-token")
    page.click("form.signin button[type=submit]")
    page.wait_for_function("() => (document.querySelector('.signin-error')?.textContent || '').includes('not accepted')")
    page.fill("form.signin input[name=token]", srv.admin_token or "")
    page.click("form.signin button[type=submit]")
    page.locator("tr.study-row").first.wait_for()
    assert page.locator("tr.study-row").count() == 4
    assert "admin" in page.locator("#user").inner_text()
    cookies = context.cookies()
    assert cookies and all(c["httpOnly"] for c in cookies)
    page.click("button.signout")
    form.wait_for()
    assert httpx.get(f"{srv.root}/auth/whoami").status_code == 401


def test_token_in_fragment_signs_in_and_leaves_the_address(auth_server: tuple[Server, ViewerData], context: Any) -> None:
    srv, data = auth_server
    page = context.new_page()
    page.goto(f"{srv.root}/viewer/?study={data.ct.study}#token={srv.admin_token}")
    page.wait_for_selector(".viewport.active.has-image")
    assert "token" not in page.url and "#" not in page.url
    assert page.evaluate("() => location.hash") == ""


def test_embed_in_a_portal_with_a_share_link(auth_server: tuple[Server, ViewerData], context: Any) -> None:
    srv, data = auth_server
    token = share_token(srv, data.ct.study)
    embed = f"{srv.root}/viewer/embed?study={data.ct.study}#token={token}"
    html = f'<!doctype html><title>portal</title><iframe src="{embed}" width="1200" height="680"></iframe>'
    requests: list[tuple[str, str | None]] = []
    context.on("request", lambda r: requests.append((r.url, r.headers.get("authorization")))
               if "/dicomweb/" in r.url else None)
    page = context.new_page()
    with portal(html) as url:
        page.goto(url)
        frame = page.frame_locator("iframe")
        frame.locator(".viewport.active.has-image").wait_for()
    viewer = next(f for f in page.frames if "/viewer/embed" in f.url)
    viewer.wait_for_function("() => { const v = window.__tesseraViewer.active; return v.loader.fullCount === v.loader.n; }")
    assert "token" not in viewer.url
    assert requests and all(auth == f"Bearer {token}" for _url, auth in requests), requests[:3]
    assert not [c for c in context.cookies() if c["domain"] in ("127.0.0.1", "localhost")]
    # The share link reads its one study only: another study is refused, in words.
    page2 = context.new_page()
    page2.goto(f"{srv.root}/viewer/embed?study={data.other.study}#token={token}")
    page2.wait_for_function("() => document.querySelector('.page-error')")
    assert "permission" in page2.locator(".page-error").inner_text()


def test_embed_without_credentials_asks_for_them(auth_server: tuple[Server, ViewerData], context: Any) -> None:
    srv, data = auth_server
    page = context.new_page()
    page.goto(f"{srv.root}/viewer/embed?study={data.ct.study}")
    page.locator("form.signin").wait_for()
    assert "share link" in page.locator("form.signin").inner_text()
