"""The ``tessera`` command: serve, import, synth, demo.

Flags become the same ``Settings`` the server reads from TESSERA_* variables, so a flag and its
variable always mean the same thing.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from archive.service import Archive, ArchiveConfig, StoreResult
from web.settings import Settings, SettingsError

log = logging.getLogger(__name__)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def build_archive(settings: Settings) -> Archive:
    return Archive(
        settings.data,
        ArchiveConfig(
            durable=settings.fsync,
            overwrite=settings.overwrite,
            max_instance_bytes=settings.max_instance_bytes,
            max_pixel_bytes=settings.max_pixel_bytes,
        ),
    )


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        data=getattr(args, "data", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        workers=getattr(args, "workers", None),
    )


def serve(settings: Settings, *, banner: str | None = None) -> None:
    import uvicorn

    configure_logging(settings.log_level)
    settings.data.mkdir(parents=True, exist_ok=True)
    if banner:
        print(banner, flush=True)
    common = {"host": settings.host, "port": settings.port, "log_level": "warning", "access_log": False}
    if settings.workers == 0:
        settings = replace(settings, workers=os.cpu_count() or 1)
    if settings.workers > 1:
        # Worker processes rebuild the same settings from the environment; their metrics go to files
        # in one folder that /metrics merges (prometheus-client multiprocess mode), set before any
        # worker imports prometheus_client.
        metrics_dir = tempfile.mkdtemp(prefix="tessera-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        settings = replace(settings, metrics_dir=metrics_dir)
        os.environ.update(settings.to_env())
        uvicorn.run("web.app:app_from_env", factory=True, workers=settings.workers, **common)  # type: ignore[arg-type]
        return
    from web.app import create_app

    uvicorn.run(create_app(settings, build_archive(settings)), **common)  # type: ignore[arg-type]


def _iter_files(paths: Sequence[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and not child.name.startswith("."):
                    yield child
        elif path.is_file():
            yield path
        else:
            print(f"warning: {raw} does not exist", file=sys.stderr)


def import_files(settings: Settings, paths: Sequence[str], batch: int = 32) -> dict[str, int]:
    """Store every file under ``paths`` into the archive; prints progress and a summary."""
    from tqdm import tqdm

    archive = build_archive(settings)
    files = list(_iter_files(paths))
    counts = {"stored": 0, "present": 0, "replaced": 0, "failed": 0}
    failures: list[tuple[Path, StoreResult]] = []
    with tqdm(total=len(files), unit="file", desc="importing", file=sys.stderr) as bar:
        for start in range(0, len(files), batch):
            chunk = files[start : start + batch]
            results = archive.store([p.read_bytes() for p in chunk])
            for path, result in zip(chunk, results):
                counts[result.status] += 1
                if not result.ok:
                    failures.append((path, result))
            bar.update(len(chunk))
    print(
        f"stored {counts['stored']}, already present {counts['present']}, replaced {counts['replaced']}, "
        f"failed {counts['failed']}"
    )
    for path, result in failures:
        print(f"  failed: {path}: {result.message} (FailureReason 0x{result.failure_reason:04X})")
    return counts


def _synth(args: argparse.Namespace) -> int:
    from archive.synth import write_series

    paths = write_series(
        Path(args.out),
        modality=args.modality,
        rows=args.rows,
        columns=args.columns,
        slices=args.slices,
        syntax=args.syntax,
        seed=args.seed,
    )
    print(f"wrote {len(paths)} files to {args.out}")
    return 0


def renditions(settings: Settings, *, run: bool) -> int:
    """Print rendition progress (done, skipped, backlog, bytes); with ``run``, first work through the
    backlog in the foreground. Returns the exit status (1 when a server already holds the work)."""
    from archive.errors import ArchiveError
    from archive.renditions import RenditionPolicy, run_backlog

    archive = build_archive(settings)
    policy = RenditionPolicy.from_modalities(settings.rendition_modalities)
    if run:
        from tqdm import tqdm

        total = archive.index.rendition_stats(policy.syntaxes, policy.modalities).backlog
        try:
            with tqdm(total=total, unit="instance", desc="transcoding", file=sys.stderr) as bar:
                counts = run_backlog(archive, policy, progress=lambda _outcome: bar.update(1))
        except ArchiveError as exc:
            print(f"tessera: {exc}", file=sys.stderr)
            return 1
        print(", ".join(f"{k} {v}" for k, v in counts.items()))
    stats = archive.index.rendition_stats(policy.syntaxes, policy.modalities)
    extra = 100.0 * stats.bytes / stats.original_bytes if stats.original_bytes else 0.0
    print(
        f"done {stats.done}, skipped {stats.skipped}, backlog {stats.backlog}, "
        f"bytes {stats.bytes} ({extra:.1f}% of the {stats.original_bytes} bytes of their originals)"
    )
    return 0


def demo(settings: Settings) -> None:
    """Load a synthetic CT study (once) and serve it."""
    from archive.synth import write_series

    marker = settings.data / ".demo-loaded"
    if not marker.exists():
        series_dir = settings.data / "demo-series"
        print("writing a 120-slice synthetic CT and a 24-slice MR...", flush=True)
        write_series(series_dir / "ct", modality="CT", rows=512, columns=512, slices=120, syntax="j2k", seed=7)
        write_series(series_dir / "mr", modality="MR", rows=256, columns=256, slices=24, syntax="explicit", seed=8)
        import_files(settings, [str(series_dir)])
        marker.write_text("ok\n")
    url = f"http://{settings.host}:{settings.port}"
    serve(settings, banner=f"Tessera demo: {url}/dicomweb/studies (DICOMweb root {url}/dicomweb)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tessera", description="Tessera cloud PACS image server")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the DICOMweb server")
    p_demo = sub.add_parser("demo", help="load a synthetic demo study and serve it")
    for p in (p_serve, p_demo):
        p.add_argument("--host", help="address to bind (TESSERA_HOST, default 127.0.0.1)")
        p.add_argument("--port", type=int, help="port (TESSERA_PORT, default 8000)")
        p.add_argument("--data", help="archive folder (TESSERA_DATA, default ./data)")
        p.add_argument("--workers", type=int, help="server processes (TESSERA_WORKERS, default: one per core)")
    p_import = sub.add_parser("import", help="import DICOM files and folders (recursively)")
    p_import.add_argument("paths", nargs="+")
    p_import.add_argument("--data", help="archive folder (TESSERA_DATA)")
    p_rend = sub.add_parser("renditions", help="fast-decode renditions: progress, or --run the backlog")
    p_rend.add_argument("--data", help="archive folder (TESSERA_DATA)")
    p_rend.add_argument("--run", action="store_true", help="transcode the backlog now, in the foreground")
    p_synth = sub.add_parser("synth", help="write a synthetic CT or MR series")
    p_synth.add_argument("--out", required=True, help="folder to write into")
    p_synth.add_argument("--modality", choices=["CT", "MR"], default="CT")
    p_synth.add_argument("--rows", type=int, default=512)
    p_synth.add_argument("--columns", type=int, default=512)
    p_synth.add_argument("--slices", type=int, default=100)
    p_synth.add_argument("--syntax", default="explicit", help="explicit, j2k, htj2k, jpegls, rle, ...")
    p_synth.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.command == "synth":
            return _synth(args)
        settings = _settings(args)
        if args.command == "serve":
            serve(settings)
        elif args.command == "demo":
            if not args.data and "TESSERA_DATA" not in os.environ:
                settings = Settings.from_env(data="./demo-data", host=args.host, port=args.port, workers=args.workers)
            demo(settings)
        elif args.command == "renditions":
            return renditions(settings, run=args.run)
        elif args.command == "import":
            counts = import_files(settings, args.paths)
            return 1 if counts["failed"] and not (counts["stored"] or counts["present"]) else 0
    except SettingsError as exc:
        print(f"tessera: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"tessera: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
