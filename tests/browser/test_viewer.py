"""The viewer in headless Chromium (issue 6 acceptance): study list and search, opening a study,
scrolling, window, zoom, a measured length on a synthetic image, cine, tiles, layouts, embed mode,
errors in words, and the canvas pixels against the server's rendered PNG. Plus the static files'
HTTP contract (media types, validators, nothing outside the folder).
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import httpx
import imagecodecs
import numpy as np
import pydicom
import pytest

from tests.browser.conftest import FOV_MM, ViewerData
from tests.conftest import DATA, Server
from tests.dicomweb_helpers import stow

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

ACTIVE = "window.__tesseraViewer.active"


@pytest.fixture(scope="module")
def env(viewer_server: tuple[Server, ViewerData], browser: Any) -> Iterator[tuple[Server, ViewerData, Any]]:
    srv, data = viewer_server
    yield srv, data, browser


@pytest.fixture
def page(env: tuple[Server, ViewerData, Any]) -> Iterator[Any]:
    _srv, _data, browser = env
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.set_default_timeout(15_000)
    yield pg
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def open_study(pg: Any, srv: Server, study: str, full: bool = True, query: str = "") -> None:
    pg.goto(f"{srv.root}/viewer/?study={study}{query}")
    pg.wait_for_selector(".viewport.active.has-image")
    if full:
        wait_full(pg)


def wait_full(pg: Any) -> None:
    """Every slice of the active viewport at full resolution, and the viewed one drawn so."""
    pg.wait_for_function(f"() => {{ const v = {ACTIVE}; return v.loader && v.loader.n > 0"
                         " && v.loader.fullCount === v.loader.n && v.lastDrawn && v.lastDrawn.full"
                         " && !v.lastDrawn.stale && v.lastDrawn.index === v.index && v.lastDrawn.scale === v.scale"
                         " && v.lastDrawn.inverted === v.inverted; }")


def state(pg: Any) -> dict[str, Any]:
    return pg.evaluate(f"""() => {{ const v = {ACTIVE}; return {{ index: v.index, n: v.loader.n, scale: v.scale,
        tool: v.tool, cine: v.cine.playing, inverted: v.inverted, sop: v.item.sop,
        window: v.loader.window, drawn: v.lastDrawn }}; }}""")


def canvas_grey(pg: Any) -> np.ndarray:
    """The image's pixels as drawn on the active viewport's canvas (grey, from getImageData)."""
    out = pg.evaluate(f"""() => {{
        const v = {ACTIVE}; const [x, y] = v.origin(); const it = v.item;
        const d = v.ctx.getImageData(x, y, it.columns, it.rows).data;
        const grey = new Uint8Array(it.columns * it.rows); let colour = 0;
        for (let i = 0, j = 0; j < grey.length; i += 4, j++) {{
          grey[j] = d[i]; if (d[i] !== d[i + 1] || d[i] !== d[i + 2]) colour++;
        }}
        let s = ''; for (let i = 0; i < grey.length; i += 0x8000) s += String.fromCharCode.apply(null, grey.subarray(i, i + 0x8000));
        return {{ b64: btoa(s), w: it.columns, h: it.rows, colour, x, y }};
    }}""")
    assert out["colour"] == 0
    assert float(out["x"]).is_integer() and float(out["y"]).is_integer()
    return np.frombuffer(base64.b64decode(out["b64"]), np.uint8).reshape(out["h"], out["w"])


def server_png(srv: Server, study: str, series: str, sop: str, window: str | None) -> np.ndarray:
    query = "accept=image/png" + (f"&window={window}" if window else "")
    r = httpx.get(f"{srv.url}/studies/{study}/series/{series}/instances/{sop}/frames/1/rendered?{query}", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = imagecodecs.png_decode(r.content)
    return img if img.ndim == 2 else img[..., 0]


def canvas_centre(pg: Any) -> tuple[float, float]:
    box = pg.locator(".viewport.active canvas.annotation-layer").bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


# --- static files -----------------------------------------------------------------------------


def test_static_files_have_media_types_and_validators(env: tuple[Server, ViewerData, Any]) -> None:
    srv, _data, _b = env
    with httpx.Client(base_url=srv.root, timeout=10) as client:
        page = client.get("/viewer/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="js/main.js">' in page.text
        assert "<style" not in page.text and "style=" not in page.text  # the CSP forbids inline styles
        js = client.get("/viewer/js/main.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert js.headers["cache-control"] == "no-cache"
        etag = js.headers["etag"]
        assert etag.startswith('"') and len(etag) > 10
        again = client.get("/viewer/js/main.js", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert client.get("/viewer/viewer.css").headers["content-type"].startswith("text/css")
        assert client.get("/viewer/embed").headers["content-type"].startswith("text/html")
        redirect = client.get("/viewer", follow_redirects=False)
        assert redirect.status_code in (307, 308) and redirect.headers["location"].endswith("/viewer/")
        for bad in ("/viewer/nope.js", "/viewer/js/", "/viewer/%2e%2e/viewer.py", "/viewer/..%2fviewer.py",
                    "/viewer/js/..%2f..%2fviewer.py"):
            assert client.get(bad).status_code == 404, bad


# --- study list -------------------------------------------------------------------------------


def test_study_list_search_sort_and_open(env: tuple[Server, ViewerData, Any], page: Any) -> None:
    srv, data, _b = env
    page.goto(f"{srv.root}/viewer/")
    rows = page.locator("tr.study-row")
    rows.first.wait_for()
    assert rows.count() == 4
    assert "4 studies" in page.locator(".status").inner_text()
    # Search by patient name (contains, case-insensitive).
    page.fill("input[name=patientName]", "bravo")
    page.click("button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('tr.study-row').length === 1")
    assert "VWR-B" in rows.first.inner_text()
    # By patient ID, then by modality.
    page.click("button.clear")
    page.wait_for_function("() => document.querySelectorAll('tr.study-row').length === 4")
    page.fill("input[name=patientId]", "VWR-T")
    page.press("input[name=patientId]", "Enter")
    page.wait_for_function("() => document.querySelectorAll('tr.study-row').length === 1")
    assert "VIEWER, TILES" in rows.first.inner_text()
    page.fill("input[name=patientId]", "")
    page.select_option("select[name=modality]", "MR")
    page.click("button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('tr.study-row').length === 2")
    # Date range: every synthetic study of seed s is dated 2024+s%5 / month 1+s%12 / day 1+s%28.
    page.select_option("select[name=modality]", "")
    page.fill("input[name=from]", "2027-01-01")
    page.fill("input[name=to]", "2027-12-31")
    page.click("button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('tr.study-row').length === 1")
    assert "VWR-B" in rows.first.inner_text()  # seed 3: 2027-04-04
    # Sorting by patient ID, both ways.
    page.click("button.clear")
    page.wait_for_function("() => document.querySelectorAll('tr.study-row').length === 4")
    page.click("th[data-key=patientId] button")
    ids = [r.split("\t")[1] for r in rows.all_inner_texts()]
    assert ids == sorted(ids)
    assert page.get_attribute("th[data-key=patientId]", "aria-sort") == "ascending"
    page.click("th[data-key=patientId] button")
    assert [r.split("\t")[1] for r in rows.all_inner_texts()] == sorted(ids, reverse=True)
    # Open a study.
    page.click(f"tr.study-row[data-study='{data.ct.study}']")
    page.wait_for_selector(".viewport.active.has-image")
    assert f"study={data.ct.study}" in page.url
    assert page.locator(".series-item").count() == 2
    counts = page.locator(".series-count").all_inner_texts()
    assert sorted(counts) == ["12 images", "24 images"]
    # Back to the list keeps the search.
    page.go_back()
    rows.first.wait_for()
    assert rows.count() == 4


# --- stack viewport ---------------------------------------------------------------------------


def test_scroll_by_wheel_keys_drag_and_scrollbar(env: tuple[Server, ViewerData, Any], page: Any) -> None:
    srv, data, _b = env
    open_study(page, srv, data.ct.study, full=False)
    s = state(page)
    assert s["n"] == 24 and s["index"] == 11  # starts at the middle, the series stream's first part
    assert page.locator(".viewport.active .corner.bl").inner_text().startswith("Im 12/24")
    x, y = canvas_centre(page)
    page.mouse.move(x, y)
    page.mouse.wheel(0, 100)
    page.wait_for_function(f"() => {ACTIVE}.index === 13")
    page.mouse.wheel(0, -50)
    page.wait_for_function(f"() => {ACTIVE}.index === 12")
    page.keyboard.press("End")
    assert state(page)["index"] == 23
    page.keyboard.press("ArrowUp")
    assert state(page)["index"] == 22
    page.keyboard.press("Home")
    assert state(page)["index"] == 0
    page.keyboard.press("ArrowDown")
    assert state(page)["index"] == 1
    # Left-drag with the scroll tool.
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x, y + 100, steps=5)
    page.mouse.up()
    assert state(page)["index"] > 5
    # The scrollbar: a click near its end jumps there.
    bar = page.locator(".viewport.active .scrollbar").bounding_box()
    page.mouse.click(bar["x"] + bar["width"] / 2, bar["y"] + bar["height"] - 1)
    assert state(page)["index"] == 23
    # Every slice exists at some resolution once the low pass is in: no slice waits for the network.
    page.wait_for_function(f"() => {ACTIVE}.loader.lowCount === 24")
    for _ in range(23):
        page.keyboard.press("ArrowUp")
        assert page.evaluate(f"() => {ACTIVE}.loader.image({ACTIVE}.index) !== null")
    # The loading bar shows low and full resolution progress.
    wait_full(page)
    bar_el = page.locator(".viewport.active .progress")
    assert bar_el.get_attribute("data-low") == "24" and bar_el.get_attribute("data-full") == "24"


# On a loopback server the full pass comes as uncompressed PNG read by the viewer itself (raster.js);
# `transfer=compact` asks for the server's deflated PNG, decoded by the browser.
@pytest.mark.parametrize("transfer,held", [("", "Raster"), ("compact", "ImageBitmap")], ids=["stored-png", "deflated-png"])
@pytest.mark.parametrize("key,window", [("0", None), ("4", "60,400,linear"), ("2", "-600,1500,linear")],
                         ids=["own-window", "ct-abdomen", "ct-lung"])
def test_canvas_matches_server_png(env: tuple[Server, ViewerData, Any], page: Any, key: str,
                                   window: str | None, transfer: str, held: str) -> None:
    srv, data, _b = env
    open_study(page, srv, data.ct.study, query=f"&transfer={transfer}" if transfer else "")
    page.keyboard.press("Home")
    for _ in range(5):
        page.keyboard.press("ArrowDown")
    page.keyboard.press(key)
    page.keyboard.press("a")  # actual size: one image pixel per canvas pixel
    wait_full(page)
    s = state(page)
    assert s["index"] == 5 and s["scale"] == 1 and s["sop"] == data.ct.sops[5]
    expected = server_png(srv, data.ct.study, data.ct.series, data.ct.sops[5], window)
    got = canvas_grey(page)
    assert got.shape == expected.shape == (512, 512)
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.max() <= 1, f"max difference {diff.max()} grey levels, {np.count_nonzero(diff)} pixels differ"
    assert page.evaluate(f"() => {ACTIVE}.loader.full[5].bitmap.constructor.name") == held
    # Pixel rows take their PNG's place; a bitmap keeps its PNG to be decoded again after eviction.
    assert page.evaluate(f"() => {ACTIVE}.loader.full[5].blob === null") == (held == "Raster")
    if window:
        c, w, _f = window.split(",")
        assert page.locator(".viewport.active .corner.br").inner_text().startswith(f"W {w} L {c}")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def _split_idat(png: bytes, size: int) -> bytes:
    """The same PNG with its image data cut into IDAT chunks of ``size`` bytes (as libpng writes)."""
    pos, head, idat, tail = 8, b"", b"", b""
    while pos < len(png):
        length = int.from_bytes(png[pos:pos + 4], "big")
        chunk, kind = png[pos:pos + 12 + length], png[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += chunk[8:-4]
        elif idat:
            tail += chunk
        else:
            head += chunk
        pos += 12 + length
    cut = b"".join(_png_chunk(b"IDAT", idat[i:i + size]) for i in range(0, len(idat), size))
    return png[:8] + head + cut + tail


def test_stored_png_reader(env: tuple[Server, ViewerData, Any], page: Any) -> None:
    """raster.js reads uncompressed PNGs (grey, RGB, image data over several chunks) to the PNG's
    pixels, and declines every other PNG (deflated, filtered, palette, 16-bit, truncated)."""
    srv, _data, _b = env
    page.goto(f"{srv.root}/viewer/")
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (300, 257), np.uint8)
    rgb = rng.integers(0, 256, (40, 70, 3), np.uint8)
    stored = {"level": 0, "filter": 0x08}
    cases = {
        "grey": (imagecodecs.png_encode(grey, **stored), grey),
        "rgb": (imagecodecs.png_encode(rgb, **stored), rgb),
        "grey-split": (_split_idat(imagecodecs.png_encode(grey, **stored), 8192), grey),
        "grey-tiny-chunks": (_split_idat(imagecodecs.png_encode(grey, **stored), 7), grey),
        "deflated": (imagecodecs.png_encode(grey, level=1), None),
        "filtered": (imagecodecs.png_encode(grey, level=0, filter=0x10), None),
        "16-bit": (imagecodecs.png_encode(grey.astype(np.uint16) * 257, **stored), None),
        "truncated": (imagecodecs.png_encode(grey, **stored)[:-30], None),
        "not-png": (b"\xff\xd8\xff" + bytes(100), None),
    }
    for name, (png, expected) in cases.items():
        out = page.evaluate("""async (b64) => {
            const { readStoredPng } = await import('/viewer/js/raster.js');
            const r = readStoredPng(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
            if (!r) return null;
            const d = r.imageData().data;
            let s = ''; for (let i = 0; i < d.length; i += 0x8000) s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000));
            return { w: r.width, h: r.height, rgba: btoa(s) };
        }""", base64.b64encode(png).decode())
        if expected is None:
            assert out is None, name
            continue
        assert out is not None, name
        rgba = np.frombuffer(base64.b64decode(out["rgba"]), np.uint8).reshape(out["h"], out["w"], 4)
        want = expected if expected.ndim == 3 else np.repeat(expected[..., None], 3, axis=2)
        assert np.array_equal(rgba[..., :3], want), name
        assert (rgba[..., 3] == 255).all(), name


def test_window_by_right_drag_and_invert(env: tuple[Server, ViewerData, Any], page: Any) -> None:
    srv, data, _b = env
    open_study(page, srv, data.ct.study)
    br = page.locator(".viewport.active .corner.br")
    assert br.inner_text().startswith("W 400 L 40")  # the file's own first window
    windows: list[str] = []
    page.on("request", lambda r: windows.append(r.url) if "window=" in r.url else None)
    x, y = canvas_centre(page)
    page.mouse.move(x, y)
    page.mouse.down(button="right")
    page.mouse.move(x + 50, y - 30, steps=5)
    page.mouse.up(button="right")
    s = state(page)
    assert s["window"]["width"] > 400 and s["window"]["center"] > 40
    label = f"W {s['window']['width']} L {s['window']['center']}"
    page.wait_for_function("t => (document.querySelector('.viewport.active .corner.br')?.innerText || '').startsWith(t)", arg=label)
    wait_full(page)  # the series is fetched again with the new window
    assert any(f"window={s['window']['center']},{s['window']['width']},linear" in u for u in windows)
    # Invert: every grey level g becomes 255 - g (checked at actual size).
    page.keyboard.press("a")
    wait_full(page)
    before = canvas_grey(page)
    page.click("button.invert")
    page.wait_for_function(f"() => {ACTIVE}.lastDrawn.inverted")
    wait_full(page)
    after = canvas_grey(page)
    assert np.array_equal(after.astype(int), 255 - before.astype(int))
    assert "Inverted" in br.inner_text()


def test_zoom_fit_and_actual_size(env: tuple[Server, ViewerData, Any], page: Any) -> None:
    srv, data, _b = env
    open_study(page, srv, data.ct.study, full=False)
    fit = state(page)["scale"]
    assert 0.5 < fit < 3
    page.click("button.actual")
    assert state(page)["scale"] == 1
    page.wait_for_function("() => (document.querySelector('.viewport.active .corner.br')?.innerText || '').includes('Zoom 100%')")
    page.keyboard.press("+")
    assert state(page)["scale"] == pytest.approx(1.25)
    x, y = canvas_centre(page)
    page.mouse.move(x, y)
    page.keyboard.down("Control")
    page.mouse.wheel(0, -200)
    page.keyboard.up("Control")
    page.wait_for_function(f"() => {ACTIVE}.scale > 1.3")
    # Zoom keeps the point under the pointer in place.
    page.click("button.fit")
    assert state(page)["scale"] == pytest.approx(fit)
    page.click("button.tool[data-tool=zoom]")
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x, y - 80, steps=4)
    page.mouse.up()
    assert state(page)["scale"] > fit * 1.5
    page.dblclick(".viewport.active canvas.annotation-layer")
    assert state(page)["scale"] == pytest.approx(fit)


def measure(page: Any, a: tuple[float, float], b: tuple[float, float]) -> dict[str, Any]:
    page.click("button.tool[data-tool=measure]")
    pa = page.evaluate(f"([x, y]) => {ACTIVE}.imageToClient(x, y)", list(a))
    pb = page.evaluate(f"([x, y]) => {ACTIVE}.imageToClient(x, y)", list(b))
    page.mouse.move(pa["x"], pa["y"])
    page.mouse.down()
    page.mouse.move(pb["x"], pb["y"], steps=6)
    page.mouse.up()
    readout = page.locator(".viewport.active .measure-readout")
    return {"value": float(readout.get_attribute("data-value")), "unit": readout.get_attribute("data-unit"),
            "text": readout.inner_text()}


def test_measure_known_distance_in_mm(env: tuple[Server, ViewerData, Any], page: Any) -> None:
    srv, data, _b = env
    open_study(page, srv, data.ct.study, full=False)
    spacing = FOV_MM / 512
    page.keyboard.press("a")
    # 300 pixels along a row and a 3-4-5 diagonal (240, 180): 300 pixels too.
    for a, b in (((100.5, 256.5), (400.5, 256.5)), ((150.5, 150.5), (390.5, 330.5))):
        got = measure(page, a, b)
        assert got["unit"] == "mm"
        assert got["value"] == pytest.approx(300 * spacing, rel=0.01), got
    # Zoomed out, the same image distance measures the same.
    page.click("button.fit")
    got = measure(page, (100.5, 100.5), (100.5, 400.5))
    assert got["value"] == pytest.approx(300 * spacing, rel=0.01)
    assert "mm" in got["text"]


def test_measure_without_pixel_spacing_says_so(env: tuple[Server, ViewerData, Any], page: Any) -> None:
    srv, data, _b = env
    open_study(page, srv, data.nospacing.study, full=False)
    got = measure(page, (20.5, 50.5), (220.5, 50.5))
    assert got["unit"] == "px" and got["value"] == pytest.approx(200, rel=0.01)
    assert "no Pixel Spacing" in got["text"]


def test_cine_plays_at_its_frame_rate_and_stops(env: tuple[Server, ViewerData, Any], page: Any) -> None:
    srv, data, _b = env
    open_study(page, srv, data.ct.study)
    page.select_option("select.fps", "30")
    start = state(page)["index"]
    page.click("button.cine")
    assert page.locator("button.cine").inner_text() == "Stop"
    page.wait_for_timeout(700)
    frames = page.evaluate(f"() => {ACTIVE}.cineFrames")
    page.keyboard.press("c")
    assert not state(page)["cine"]
    assert page.locator("button.cine").inner_text() == "Play"
    # 30 fps for 0.7 s: about 21 frames (headless timers are coarse; the loop wraps at the end).
    assert 8 <= frames <= 30, frames
    stopped = state(page)["index"]
    assert stopped != start or frames % 24 == 0
    page.wait_for_timeout(200)
    assert state(page)["index"] == stopped


def test_tiles_at_high_zoom_match_the_full_image(env: tuple[Server, ViewerData, Any], page: Any) -> None:
    srv, data, _b = env
    tiles: list[str] = []
    page.on("request", lambda r: tiles.append(r.url) if "/rendered?viewport=" in r.url and r.url.count(",") >= 5 else None)
    open_study(page, srv, data.large.study)
    drawn = page.evaluate(f"() => {ACTIVE}.loader.image(0).bitmap.width")
    assert drawn == 1024  # the full-resolution pass of a 2048x2048 frame is fitted to 1024
    page.keyboard.press("a")  # actual size: finer than the 1024 image, so level-0 tiles
    page.wait_for_function(f"() => {ACTIVE}.tileRequests > 0 && {ACTIVE}.tilesMissing === 0")
    assert tiles and all("accept=image/png" in u for u in tiles)
    # The visible part of the canvas equals the same region of the full-size rendering.
    region = page.evaluate(f"""() => {{
        const v = {ACTIVE}; const [ox, oy] = v.origin(); const W = v.canvas.width, H = v.canvas.height;
        const x0 = Math.max(0, ox), y0 = Math.max(0, oy);
        const w = Math.min(W, ox + 2048) - x0, h = Math.min(H, oy + 2048) - y0;
        const d = v.ctx.getImageData(x0, y0, w, h).data; const g = new Uint8Array(w * h);
        for (let i = 0; i < g.length; i++) g[i] = d[i * 4];
        let s = ''; for (let i = 0; i < g.length; i += 0x8000) s += String.fromCharCode.apply(null, g.subarray(i, i + 0x8000));
        return {{ b64: btoa(s), ix: x0 - ox, iy: y0 - oy, w, h }};
    }}""")
    got = np.frombuffer(base64.b64decode(region["b64"]), np.uint8).reshape(region["h"], region["w"])
    full = server_png(srv, data.large.study, data.large.series, data.large.sops[0], None)
    want = full[region["iy"]:region["iy"] + region["h"], region["ix"]:region["ix"] + region["w"]]
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_layouts_and_drag_a_series_in(env: tuple[Server, ViewerData, Any], page: Any) -> None:
    srv, data, _b = env
    open_study(page, srv, data.ct.study, full=False)
    page.click("button.layout[data-layout='2x2']")
    assert page.locator(".viewport").count() == 4
    page.click("button.layout[data-layout='1x2']")
    assert page.locator(".viewport").count() == 2
    second = page.locator(".viewport[data-slot='1']")
    # A new viewport shows the next series; dragging the CT in replaces it.
    assert second.get_attribute("data-series") == data.mr.series
    page.drag_and_drop(f".series-item[data-series='{data.ct.series}']", ".viewport[data-slot='1']")
    page.wait_for_function(f"() => document.querySelector(\".viewport[data-slot='1']\").dataset.series === '{data.ct.series}'")
    page.wait_for_selector(".viewport[data-slot='1'].has-image")
    assert "active" in (second.get_attribute("class") or "")
    # Tab moves between viewports (from inside them: elsewhere it moves the focus as usual); a click
    # on a series shows it in the active one.
    second.focus()
    page.keyboard.press("Tab")
    assert "active" in (page.locator(".viewport[data-slot='0']").get_attribute("class") or "")
    page.click(f".series-item[data-series='{data.mr.series}']")
    page.wait_for_function(f"() => document.querySelector(\".viewport[data-slot='0']\").dataset.series === '{data.mr.series}'")


def test_help_overlay_lists_shortcuts(env: tuple[Server, ViewerData, Any], page: Any) -> None:
    srv, data, _b = env
    open_study(page, srv, data.ct.study, full=False)
    page.keyboard.press("?")
    overlay = page.locator(".help-overlay")
    assert overlay.is_visible()
    text = overlay.inner_text()
    for words in ("Right-drag", "CT brain", "cine", "length measurement", "actual size"):
        assert words in text
    page.keyboard.press("Escape")
    assert not overlay.is_visible()
    page.click("button.help-button")
    assert overlay.is_visible()


def test_embed_mode(env: tuple[Server, ViewerData, Any], page: Any) -> None:
    srv, data, _b = env
    page.goto(f"{srv.root}/viewer/embed?study={data.other.study}")
    page.wait_for_selector(".viewport.active.has-image")
    assert page.locator(".app-header").count() == 0  # the viewer alone: no study list, no header
    assert page.locator("button.back").count() == 0 or not page.locator("button.back").is_visible()
    assert state(page)["n"] == 10
    page.goto(f"{srv.root}/viewer/embed")
    assert "No study given" in page.locator(".page-error").inner_text()


def test_a_series_stream_that_breaks_is_started_again(env: tuple[Server, ViewerData, Any], page: Any) -> None:
    srv, data, _b = env
    full_streams = []

    def handle(route: Any) -> None:
        url = route.request.url
        if "/instances/" not in url and "image/png" in unquote(url):  # the full-size series stream
            full_streams.append(url)
            if len(full_streams) == 1:
                route.abort("connectionreset")  # a network blip mid-load
                return
        route.continue_()

    page.route(lambda url: "/rendered" in url, handle)
    open_study(page, srv, data.ct.study, full=True)  # every slice still reaches full resolution
    assert len(full_streams) >= 2
    assert "not reach" not in page.locator(".viewport.active").inner_text()


def test_a_multiframe_instance_is_a_stack_of_its_frames(env: tuple[Server, ViewerData, Any], page: Any) -> None:
    srv, _data, _b = env
    path = DATA / "photometric_and_oddities" / "emri_small.dcm"  # one MR instance of 10 frames
    study = str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
    assert stow(srv.url, [path.read_bytes()], headers=srv.headers()).status_code in (200, 409)
    open_study(page, srv, study)
    st = state(page)
    # The provisional stack (one slice per instance) becomes the ten frames, centred on the middle.
    assert st["n"] == 10 and st["index"] == 4 and st["drawn"]["full"]


def test_errors_are_shown_in_words(env: tuple[Server, ViewerData, Any], page: Any) -> None:
    srv, _data, _b = env
    page.goto(f"{srv.root}/viewer/?study=1.2.3.999")
    assert "not found" in page.locator(".page-error").inner_text()
    page.route("**/dicomweb/**", lambda route: route.abort())
    page.goto(f"{srv.root}/viewer/")
    page.wait_for_function("() => (document.querySelector('.status')?.textContent || '').includes('Cannot reach the server')")
    assert page.locator("#banner").is_visible()


@pytest.mark.parametrize("size", [(1280, 720), (820, 1180), (1180, 820)], ids=["1280x720", "tablet-portrait",
                                                                             "tablet-landscape"])
def test_fits_the_screen(env: tuple[Server, ViewerData, Any], size: tuple[int, int]) -> None:
    srv, data, browser = env
    context = browser.new_context(viewport={"width": size[0], "height": size[1]}, has_touch=size[0] < 1280)
    try:
        pg = context.new_page()
        open_study(pg, srv, data.ct.study, full=False)
        fits = pg.evaluate("""() => ({ w: document.documentElement.scrollWidth <= innerWidth,
            h: document.documentElement.scrollHeight <= innerHeight })""")
        assert fits == {"w": True, "h": True}
        vp = pg.locator(".viewport.active").bounding_box()
        assert vp["width"] > size[0] * 0.6 and vp["height"] > size[1] * 0.45
        toolbar = pg.locator(".toolbar").bounding_box()
        assert toolbar["x"] + toolbar["width"] <= size[0]
        if size[0] < 1000:
            strip = pg.locator(".series-list").bounding_box()
            assert strip["width"] > strip["height"]  # the series become a strip above the viewports
        if size[0] < 1280:
            # A tap on a series shows it; touch scrolling through the stack works by dragging.
            pg.tap(f".series-item[data-series='{data.mr.series}']")
            pg.wait_for_selector(f".viewport.active.has-image[data-series='{data.mr.series}']")
    finally:
        context.close()
