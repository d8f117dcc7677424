"""The browser viewer on a 500-slice 512x512 JPEG 2000 lossless CT (issue 6 acceptance): in headless
Chromium (Debian's, driven by Playwright), how soon after the series is opened its first image is
drawn, every slice is drawable at low resolution, and every slice at full resolution.

The series is the one ``bench/stream_bench.py`` uses (``archive.synth.write_series``, syntax ``j2k``,
seed 1, written once under ``bench/work/stream/`` and reused). It is ingested once into fresh storage
under ``bench/work/viewer/`` with renditions on, and the HTJ2K rendition backlog is waited for (the
renditions are part of the archive, made at ingest, not a cache). Then ``--rounds`` rounds, each cold:
a freshly started server process (empty memory caches; no Redis: ``TESSERA_REDIS_URL`` is cleared) and
a fresh browser context (empty HTTP cache) whose tab, open for ``--settle`` seconds (default 0.5, as in a
running browser; 0 lets the tab's process start while the series opens), opens ``/viewer/?study=UID``
(``--entry link``, the default) or loads the study list, waits for the page to go idle and clicks the
study (``--entry list``). The viewer shows the
study's one series at once; its series loader records (``window.__tesseraStats``, also as
``performance.mark``s):

- ``opened``: the loader starts (the instance list and the low-resolution series stream are requested),
- ``first drawn``: the first image is on the canvas,
- ``all low``: every slice decoded and drawable (at 128x128 JPEG, or already at full size),
- ``all full``: every slice decoded at full resolution (lossless PNG, 512x512).

Times are from ``opened``; the time from navigation start (page, scripts, study and series queries)
is reported too. Medians and min-max over the rounds. Targets: first image < 150 ms, all low < 1 s,
all full < 2 s (from opening the series).

Run: .venv/bin/python bench/viewer_bench.py [--slices 500] [--rounds 5] [--out bench/out/viewer.json]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make `bench`, `archive` and `cache` importable
    sys.path.insert(0, str(ROOT))

from bench.dicomweb_client_load import build_stow_bodies, stow_series
from bench.procs import exit_on_signals, free_port
from bench.stream_bench import make_series, rendition_stats
from bench.tessera_server import tessera

WORK = ROOT / "bench" / "work" / "viewer"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TARGETS_MS = {"first_drawn": 150.0, "all_low": 1000.0, "all_full": 2000.0}
METRICS = ("first_drawn", "all_low", "all_full")


def server_env() -> None:
    # tessera_server passes os.environ on: renditions on (default), no Redis, product cache defaults.
    os.environ["TESSERA_RENDITIONS"] = "1"
    os.environ.pop("TESSERA_REDIS_URL", None)


def prepare(series: Any, port: int, deadline_s: float) -> dict[str, Any]:
    """Fresh storage, the series ingested, the rendition backlog emptied; the server then stops."""
    server_env()
    with tessera(WORK, port=port, fsync=False, quiet=True) as base:
        t0 = time.perf_counter()
        stow_series(base, build_stow_bodies(series.files, 10), concurrency=4)
        ingest_s = time.perf_counter() - t0
        deadline = time.perf_counter() + deadline_s
        stats = rendition_stats(WORK / "data")
        while stats.backlog > 0:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"rendition backlog not empty after {deadline_s} s: {stats}")
            time.sleep(0.1)  # polling the index with a deadline
            stats = rendition_stats(WORK / "data")
        drained_s = time.perf_counter() - t0 - ingest_s
    print(f"  ingest {ingest_s:.1f} s; renditions {stats.done} made, backlog empty {drained_s:.1f} s after", flush=True)
    return {"ingest_s": ingest_s, "renditions_done": stats.done, "backlog_drain_s": drained_s}


def one_round(browser: Any, series: Any, port: int, timeout_s: float, transfer: str = "auto",
              entry: str = "link", settle_s: float = 0.0) -> dict[str, Any]:
    server_env()
    with tessera(WORK, port=port, fsync=False, fresh=False, quiet=True) as base:
        root = base.rsplit("/dicomweb", 1)[0]
        context = browser.new_context(viewport={"width": 1280, "height": 720})
        try:
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            # A browser that is already running, as a user's is, has its tab's process up before a link
            # is followed; without the pause that process starts while the series opens.
            time.sleep(settle_s)
            query = "" if transfer == "auto" else f"transfer={transfer}"
            clicked = None
            if entry == "list":
                # The viewer is up (study list shown, the page idle) and the study is opened from it.
                page.goto(f"{root}/viewer/?{query}")
                row = page.wait_for_selector(f'tr.study-row[data-study="{series.study_uid}"]', timeout=timeout_s * 1000)
                page.evaluate("() => new Promise((r) => requestIdleCallback(() => r(), { timeout: 2000 }))")
                time.sleep(0.3)
                clicked = page.evaluate("() => performance.now()")
                row.click()
            else:
                page.goto(f"{root}/viewer/?study={series.study_uid}&{query}")
            page.wait_for_function("() => { const s = window.__tesseraStats && window.__tesseraStats.series[0];"
                                   " return s && s.allFull !== null && s.firstDrawn !== null; }",
                                   timeout=timeout_s * 1000)
            st = page.evaluate("() => window.__tesseraStats.series[0]")
            nav = page.evaluate("() => performance.timing.navigationStart")
            if errors:
                raise RuntimeError(f"errors in the page: {errors}")
        finally:
            context.close()
    n = len(series.sop_uids)
    if st["n"] != n or st["fullCount"] != n or st["lowCount"] != n:
        raise RuntimeError(f"viewer has {st['n']} slices, {st['lowCount']} low, {st['fullCount']} full; expected {n}")
    opened = st["opened"]
    out = {m: st[k] - opened for m, k in (("first_drawn", "firstDrawn"), ("all_low", "allLow"), ("all_full", "allFull"))}
    for k in ("lowRequested", "lowHeaders", "firstReceived", "lowReceived", "fullRequested", "fullHeaders", "fullReceived"):
        out[k] = st[k] - opened if st.get(k) is not None else None
    out["low_server_ms"], out["full_server_ms"] = st.get("lowServerMs"), st.get("fullServerMs")
    out["opened_after_click_ms"] = opened - clicked if clicked is not None else None
    out.update({"first_part": st["firstImage"] - opened, "listed": st["listed"] - opened,
                "opened_after_navigation_ms": opened, "all_full_after_navigation_ms": st["allFull"],
                "low_bytes": st["lowBytes"], "full_bytes": st["fullBytes"], "navigation_start_epoch_ms": nav})
    return out


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for m in (*METRICS, "first_part", "listed", "opened_after_navigation_ms", "all_full_after_navigation_ms"):
        values = [r[m] for r in rounds]
        out[m] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per round for every slice at full size")
    parser.add_argument("--rendition-deadline", type=float, default=240.0)
    parser.add_argument("--keep", action="store_true", help="keep bench/work/viewer/ afterwards")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "viewer.json")
    parser.add_argument(
        "--entry", choices=("link", "list"), default="link",
        help="link: each round opens /viewer/?study=UID (the series opens while the page starts); list: "
             "each round loads the viewer's study list, lets the page go idle and clicks the study",
    )
    parser.add_argument(
        "--settle", type=float, default=0.5,
        help="seconds between opening the round's browser tab and navigating (default 0.5: the tab's process "
             "is up, as in a running browser, which keeps a spare one for the next navigation; 0: it starts "
             "while the viewer opens, and its start shares the two cores with the series' first image)",
    )
    parser.add_argument(
        "--transfer", default="auto",
        help="how the full pass comes, comma-separated to compare in interleaved rounds: auto (the viewer's "
             "choice: uncompressed PNG on loopback), fast (uncompressed PNG), compact (deflated PNG)",
    )
    args = parser.parse_args(argv)
    transfers = [t.strip() for t in args.transfer.split(",") if t.strip()]
    if not transfers or any(t not in ("auto", "fast", "compact") for t in transfers):
        parser.error(f"--transfer: {args.transfer!r}: comma-separated auto, fast, compact")
    exit_on_signals()
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise SystemExit(f"Chromium not found at {CHROMIUM}: apt-get install chromium")
    began = time.perf_counter()
    series = make_series(args.slices)
    port = free_port()
    print("ingest:", flush=True)
    report: dict[str, Any] = {
        "benchmark": "viewer", "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "params": {"slices": args.slices, "syntax": "j2k (lossless)", "size": "512x512", "rounds": args.rounds,
                   "browser": CHROMIUM, "window": "1280x720", "low": "128x128 JPEG stream", "full": "PNG stream",
                   "tessera_workers": "default (one per core)", "redis": "off", "transfer": transfers,
                   "entry": args.entry, "settle_s": args.settle},
        "prepare": prepare(series, port, args.rendition_deadline), "rounds": [],
    }
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        report["params"]["browser_version"] = browser.version
        try:
            for i in range(args.rounds * len(transfers)):
                transfer = transfers[i % len(transfers)]
                load = os.getloadavg()[0]
                r = one_round(browser, series, port, args.timeout, transfer, args.entry, args.settle)
                r["loadavg_1min_before"] = load
                r["transfer"] = transfer
                report["rounds"].append(r)
                print(f"round {i // len(transfers) + 1}/{args.rounds} {transfer}: first image drawn {r['first_drawn']:6.1f} ms, all low "
                      f"{r['all_low']:7.1f} ms, all full {r['all_full']:7.1f} ms  (series opened "
                      + (f"{r['opened_after_click_ms']:.0f} ms after the click" if r["opened_after_click_ms"] is not None
                         else f"{r['opened_after_navigation_ms']:.0f} ms after navigation")
                      + f"; load {load:.2f} before)", flush=True)
        finally:
            browser.close()
    # The first transfer's rounds are the headline (with one transfer, all of them); the others compare.
    for transfer in transfers:
        s = summarize([r for r in report["rounds"] if r["transfer"] == transfer])
        targets = {f"{m}_under_{TARGETS_MS[m]:.0f}ms": {"median": s[m]["median"] < TARGETS_MS[m],
                                                        "every_round": s[m]["max"] < TARGETS_MS[m]}
                   for m in METRICS}
        if transfer == transfers[0]:
            report["summary"], report["targets"] = s, targets
        else:
            report.setdefault("compared", {})[transfer] = {"summary": s, "targets": targets}
        print(f"\ntransfer {transfer}: median (min-max) over {args.rounds} cold rounds, ms from opening the series:")
        for m, label in (("first_drawn", "first image drawn"), ("all_low", "every slice at low resolution"),
                         ("all_full", "every slice at full resolution")):
            print(f"  {label:<32}{s[m]['median']:8.1f}  ({s[m]['min']:.1f}-{s[m]['max']:.1f})   "
                  f"target < {TARGETS_MS[m]:.0f}")
        print(f"  series opened after navigation  {s['opened_after_navigation_ms']['median']:8.1f}")
        print("targets:", json.dumps(targets))
    report["wall_s"] = time.perf_counter() - began
    if not args.keep:
        shutil.rmtree(WORK, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
