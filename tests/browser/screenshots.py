"""Screenshots of the viewer's main screens for the README (``docs/screenshots/*.png``), taken with the
browser tests' Chromium on a throwaway server holding the browser tests' synthetic studies.

Run: .venv/bin/python -m tests.browser.screenshots [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, load_viewer_data
from tests.conftest import start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]
ACTIVE = "window.__tesseraViewer.active"
FULL = f"() => {{ const v = {ACTIVE}; return v.loader.n && v.loader.fullCount === v.loader.n && v.lastDrawn && v.lastDrawn.full; }}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        srv = start_server(Path(tmp) / "data", env={"TESSERA_RENDITIONS": "0"})
        try:
            data = load_viewer_data(srv.url)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                page.goto(f"{srv.root}/viewer/")
                page.locator("tr.study-row").first.wait_for()
                page.screenshot(path=args.out / "study-list.png")

                page.goto(f"{srv.root}/viewer/?study={data.ct.study}")
                page.wait_for_function(FULL)
                page.keyboard.press("4")
                page.wait_for_function(FULL)
                page.click("button.tool[data-tool=measure]")
                a = page.evaluate(f"() => {ACTIVE}.imageToClient(90, 256)")
                b = page.evaluate(f"() => {ACTIVE}.imageToClient(420, 256)")
                page.mouse.move(a["x"], a["y"])
                page.mouse.down()
                page.mouse.move(b["x"], b["y"], steps=5)
                page.mouse.up()
                page.screenshot(path=args.out / "stack-viewer.png")

                page.click("button.layout[data-layout='2x2']")
                page.wait_for_selector(".viewport[data-slot='1'].has-image")
                page.drag_and_drop(f".series-item[data-series='{data.ct.series}']", ".viewport[data-slot='2']")
                page.wait_for_selector(".viewport[data-slot='2'].has-image")
                page.keyboard.press("2")
                page.wait_for_function(FULL)
                page.screenshot(path=args.out / "layout-2x2.png")

                page.keyboard.press("?")
                page.screenshot(path=args.out / "help.png")

                tablet = browser.new_page(viewport={"width": 820, "height": 1180}, has_touch=True)
                tablet.goto(f"{srv.root}/viewer/embed?study={data.ct.study}")
                tablet.wait_for_function(FULL)
                tablet.screenshot(path=args.out / "embed-tablet.png")
                browser.close()
        finally:
            stop_server(srv)
    print(f"wrote {sorted(p.name for p in args.out.glob('*.png'))} to {args.out}")


if __name__ == "__main__":
    main()
