"""Medians over several render benchmark runs (issue 3): each run's target figures side by side, then
the median of each figure and whether the medians meet the issue's targets.

Every figure is a ratio or a difference taken inside one run (``bench/render_bench.py`` pairs each
request with the floor measured next to it and each concurrent run with the ceiling measured right
before and after it); this only lines the runs up and takes medians, as the handbook asks of speed
figures on a shared, noisy host.

Run: .venv/bin/python bench/render_summary.py bench/out/render-1.json bench/out/render-2.json ...
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))

from bench.render_bench import CEILING_TARGET_SYNTAXES, targets

#: The floors that show how fast the host was during a run (one thread, ms per frame).
HOST_SYNTAXES = ("jpegls", "j2k", "j2k-lossy")


def load(path: Path) -> dict[str, Any]:
    report = json.loads(path.read_text())
    if "targets" not in report:
        report["targets"] = targets(report)
    return report


def summarize(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Per Tessera configuration: each figure's values over the runs and their median, and whether
    the medians meet the targets (every syntax within 1 ms of its floor at concurrency 1; JPEG-LS
    and JPEG 2000 at 90% of the ceiling at concurrency 16; JPEG 2000 lossless at 1.2x Orthanc)."""
    out: dict[str, Any] = {}
    servers = [s for s in reports[0]["targets"] if all(s in r["targets"] for r in reports)]
    for server in servers:
        runs = [r["targets"][server] for r in reports]
        c1 = {syn: [run["c1_minus_floor_ms"][syn] for run in runs] for syn in runs[0]["c1_minus_floor_ms"]}
        ceil = {syn: [run["c16_fraction_of_ceiling"][syn] for run in runs]
                for syn in CEILING_TARGET_SYNTAXES if syn in runs[0]["c16_fraction_of_ceiling"]}
        entry: dict[str, Any] = {
            "c1_minus_floor_ms": {syn: {"runs": v, "median": statistics.median(v)} for syn, v in c1.items()},
            "c16_fraction_of_ceiling": {syn: {"runs": v, "median": statistics.median(v)} for syn, v in ceil.items()},
        }
        entry["c1_within_1ms"] = all(statistics.median(v) <= 1.0 for v in c1.values())
        entry["c16_at_least_90pct"] = all(statistics.median(v) >= 0.9 for v in ceil.values())
        if all("j2k_vs_orthanc" in run for run in runs):
            ratios = [run["j2k_vs_orthanc"] for run in runs]
            entry["j2k_vs_orthanc"] = {"runs": ratios, "median": statistics.median(ratios)}
            entry["j2k_at_least_1.2x_orthanc"] = statistics.median(ratios) >= 1.2
        out[server] = entry
    return out


def print_summary(paths: list[Path], reports: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    print("runs:")
    for path, r in zip(paths, reports):
        floors = ", ".join(f"{syn} {r['floor'][syn]['floor_1t_median_ms']:.2f}" for syn in HOST_SYNTAXES
                           if syn in r["floor"])
        print(f"  {path}  {r.get('when', '?')}  one-thread floor ms: {floors}")
    for server, entry in summary.items():
        print(f"\n{server}")
        print(f"  {'figure':<38}{'runs':<44}median")
        for syn, v in entry["c1_minus_floor_ms"].items():
            runs = ", ".join(f"{x:.2f}" for x in v["runs"])
            print(f"  {'c1 over the floor ms, ' + syn:<38}{runs:<44}{v['median']:.2f}")
        for syn, v in entry["c16_fraction_of_ceiling"].items():
            runs = ", ".join(f"{x:.2f}" for x in v["runs"])
            print(f"  {'c16 / ceiling, ' + syn:<38}{runs:<44}{v['median']:.2f}")
        if "j2k_vs_orthanc" in entry:
            runs = ", ".join(f"{x:.2f}" for x in entry["j2k_vs_orthanc"]["runs"])
            print(f"  {'j2k c16 / Orthanc':<38}{runs:<44}{entry['j2k_vs_orthanc']['median']:.2f}")
        met = {k: v for k, v in entry.items() if isinstance(v, bool)}
        print(f"  medians meet: {met}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="render benchmark JSON reports (--out of render_bench.py)")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = parser.parse_args(argv)
    reports = [load(p) for p in args.reports]
    summary = summarize(reports)
    print_summary(args.reports, reports, summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
