"""Archive benchmark (issue 2): STOW-RS ingest, series metadata and QIDO, Tessera against Orthanc.

For each durability setting (Orthanc SyncStorageArea=false vs TESSERA_FSYNC=0, then true vs 1), both
servers start on fresh storage at the same time on different loopback ports; the same client code
posts the same in-memory multipart bodies to each in turn (order alternating between repeats, so
machine drift hits both), then times series metadata and instance-level QIDO. Medians are reported,
with ratios Tessera/Orthanc (throughput) and Orthanc_ms/Tessera_ms (latency): higher favours Tessera.

Must not send traffic anywhere but 127.0.0.1, and must not import Tessera's server code.

Run: .venv/bin/python bench/archive_bench.py [--slices 300] [--repeats 5] [--batch 10]
     [--concurrency 4] [--ingest-repeats 5] [--only orthanc|tessera] [--out bench/out/archive.json]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make `bench` and `archive` importable
    sys.path.insert(0, str(ROOT))

import pydicom

from archive.synth import write_series
from bench.dicomweb_client_load import build_stow_bodies, stow_series, time_queries
from bench.orthanc import orthanc
from bench.procs import exit_on_signals, listening_pid
from bench.tessera_server import tessera, tessera_available
from bench.wrk import server_cpu_seconds

WORK = ROOT / "bench" / "work" / "archive"
SERVERS = ("orthanc", "tessera")
IMAGE_POSITION, ROWS = "00200032", "00280010"


@dataclass(frozen=True, slots=True)
class Series:
    """The test series, held in memory as the files' bytes."""

    study_uid: str
    series_uid: str
    files: list[bytes]
    generator: str


def make_series(slices: int) -> Series:
    """Generate (or reuse) the synthetic CT series and read it into memory.

    The generator is `archive.synth.write_series` (deterministic: same arguments, same bytes).
    """
    generator = "archive.synth"
    out_dir = WORK / f"series-{generator}-{slices}x512x512-seed1"
    done = out_dir / ".complete"
    if not done.exists():
        print(f"writing {slices}-slice 512x512 CT with {generator} into {out_dir}", flush=True)
        write_series(out_dir, modality="CT", rows=512, columns=512, slices=slices, syntax="explicit", seed=1)
        done.touch()
    paths = sorted(p for p in out_dir.rglob("*") if p.is_file() and p.name != ".complete")
    if len(paths) != slices:
        raise RuntimeError(f"{out_dir} holds {len(paths)} files, expected {slices}")
    header = pydicom.dcmread(paths[0], stop_before_pixels=True)
    return Series(study_uid=str(header.StudyInstanceUID), series_uid=str(header.SeriesInstanceUID),
                  files=[p.read_bytes() for p in paths], generator=generator)


def start_servers(stack: contextlib.ExitStack, names: list[str], *, durable: bool,
                  args: argparse.Namespace) -> dict[str, str]:
    """Start the selected servers on fresh storage; return their DICOMweb base URLs."""
    bases = {}
    quiet = not args.verbose_servers
    if "orthanc" in names:
        bases["orthanc"] = stack.enter_context(orthanc(
            WORK / "orthanc", http_port=args.orthanc_port, sync_storage=durable, quiet=quiet))
    if "tessera" in names:
        bases["tessera"] = stack.enter_context(tessera(
            WORK / "tessera", port=args.tessera_port, fsync=durable, workers=args.workers, quiet=quiet))
    return bases


def run_setting(series: Series, names: list[str], *, durable: bool, args: argparse.Namespace) -> dict[str, Any]:
    """Ingest `--ingest-repeats` times on fresh storage, then time reads on the last storage."""
    bodies = build_stow_bodies(series.files, args.batch)
    rates: dict[str, list[float]] = {n: [] for n in names}
    # CPU per instance during the timed ingest: the server with its child processes (uvicorn workers,
    # parser processes) from /proc, and this client process, which shares the two cores.
    server_ms: dict[str, list[float]] = {n: [] for n in names}
    client_ms: dict[str, list[float]] = {n: [] for n in names}
    ports = {"orthanc": args.orthanc_port, "tessera": args.tessera_port}
    reads: dict[str, Any] = {}
    for rep in range(args.ingest_repeats):
        with contextlib.ExitStack() as stack:
            bases = start_servers(stack, names, durable=durable, args=args)
            order = names if rep % 2 == 0 else names[::-1]
            for name in order:
                os.sync()  # flush the previous run's dirty pages so writeback does not land in this timing
                pid = listening_pid(ports[name])
                server0, client0 = server_cpu_seconds(pid), time.process_time()
                result = stow_series(bases[name], bodies, concurrency=args.concurrency)
                server = (server_cpu_seconds(pid) - server0) * 1000 / result.instances
                client = (time.process_time() - client0) * 1000 / result.instances
                rates[name].append(result.per_second)
                server_ms[name].append(server)
                client_ms[name].append(client)
                print(f"  durable={durable} ingest #{rep + 1} {name}: {result.per_second:7.1f} inst/s "
                      f"({result.seconds:.2f} s, {result.requests} requests); CPU per instance: server "
                      f"{server:.2f} ms ({server * result.per_second / 10:.0f}% of a core), client {client:.2f} ms",
                      flush=True)
            if rep == args.ingest_repeats - 1:
                s, r = series.study_uid, series.series_uid
                paths = {
                    "series_metadata": f"/studies/{s}/series/{r}/metadata",
                    "qido_series_instances": f"/studies/{s}/series/{r}/instances",
                    "qido_instances_by_series": f"/instances?SeriesInstanceUID={r}",
                }
                timings = time_queries(bases, paths, expect=len(series.files), warmups=2, repeats=args.repeats,
                                       present_tags={"series_metadata": (IMAGE_POSITION, ROWS),
                                                     "qido_series_instances": (ROWS,),
                                                     "qido_instances_by_series": (ROWS,)})
                reads = {q: {n: {"ms": t.ms, **t.summary(), "count": t.count, "notes": t.notes}
                             for n, t in per.items()} for q, per in timings.items()}
    ingest = {n: {"runs_per_s": v, "median": statistics.median(v), "min": min(v), "max": max(v),
                  "server_cpu_ms_per_instance": statistics.median(server_ms[n]),
                  "client_cpu_ms_per_instance": statistics.median(client_ms[n])}
              for n, v in rates.items()}
    return {"durable": durable, "ingest": ingest, "reads": reads}


def ratios(setting: dict[str, Any]) -> dict[str, float]:
    """Tessera/Orthanc for throughput, Orthanc_ms/Tessera_ms for latency (higher favours Tessera)."""
    if not all(n in setting["ingest"] for n in SERVERS):
        return {}
    out = {"ingest": setting["ingest"]["tessera"]["median"] / setting["ingest"]["orthanc"]["median"]}
    for query, per in setting["reads"].items():
        out[query] = per["orthanc"]["median"] / per["tessera"]["median"]
    return out


def print_table(settings: list[dict[str, Any]], names: list[str]) -> None:
    """One line per (durability, metric): each server's median [min-max], then the ratio."""
    cols = "".join(f"{n:>28}" for n in names)
    print(f"\n{'durable':<8}{'metric':<30}{cols}{'ratio (T vs O)':>16}")
    for setting in settings:
        tag, rat = ("on" if setting["durable"] else "off"), ratios(setting)
        cells = "".join(
            f"{i['median']:>10.1f} [{i['min']:.0f}-{i['max']:.0f}]".rjust(28)
            for i in (setting["ingest"][n] for n in names))
        ratio = f"{rat['ingest']:>16.2f}" if rat else ""
        print(f"{tag:<8}{'ingest instances/s':<30}{cells}{ratio}")
        for key, label in (("server_cpu_ms_per_instance", "  server CPU ms/instance"),
                           ("client_cpu_ms_per_instance", "  client CPU ms/instance")):
            cells = "".join(f"{setting['ingest'][n][key]:>10.2f}".rjust(28) for n in names)
            print(f"{tag:<8}{label:<30}{cells}")
        for query, per in setting["reads"].items():
            cells = "".join(f"{per[n]['median']:>10.1f} [{per[n]['min']:.0f}-{per[n]['max']:.0f}]".rjust(28)
                            for n in names)
            ratio = f"{rat[query]:>16.2f}" if rat else ""
            print(f"{tag:<8}{query + ' ms':<30}{cells}{ratio}")
    notes = {(q, n): per[n]["notes"] for s in settings for q, per in s["reads"].items() for n in names
             if per[n]["notes"]}
    for (query, name), note in sorted(notes.items()):
        print(f"note: {name} {query}: {', '.join(sorted(set(note)))}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per read query")
    parser.add_argument("--ingest-repeats", type=int, default=5, help="fresh-storage ingests per setting")
    parser.add_argument("--batch", type=int, default=10, help="instances per STOW-RS request")
    parser.add_argument("--concurrency", type=int, default=4, help="STOW-RS requests in flight")
    parser.add_argument("--only", choices=SERVERS, default=None)
    parser.add_argument("--durability", choices=("off", "on", "both"), default="both")
    parser.add_argument("--orthanc-port", type=int, default=8043)
    parser.add_argument("--tessera-port", type=int, default=8044)
    parser.add_argument("--workers", type=int, default=None, help="tessera serve --workers")
    parser.add_argument("--verbose-servers", action="store_true", help="print start-up and listen checks")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "archive.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_signals()
    names = [args.only] if args.only else list(SERVERS)
    if "tessera" in names and not tessera_available():
        if args.only == "tessera":
            print("tessera is not installed in .venv", file=sys.stderr)
            return 2
        print("tessera is not installed in .venv yet: running Orthanc alone", flush=True)
        names = ["orthanc"]
    series = make_series(args.slices)
    print(f"series: {len(series.files)} instances, {sum(map(len, series.files)) / 1e6:.1f} MB, "
          f"generator {series.generator}; servers {names}", flush=True)
    durabilities = {"off": [False], "on": [True], "both": [False, True]}[args.durability]
    settings = [run_setting(series, names, durable=d, args=args) for d in durabilities]
    print_table(settings, names)

    report = {
        "benchmark": "archive", "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "series": {"instances": len(series.files), "bytes": sum(map(len, series.files)),
                   "generator": series.generator},
        "servers": names, "settings": settings, "ratios": {str(s["durable"]): ratios(s) for s in settings},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
