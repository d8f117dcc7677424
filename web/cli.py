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

from archive.errors import ArchiveError
from archive.service import Archive, ArchiveConfig, StoreResult
from web.settings import Settings, SettingsError
from web.workers import PortInUse, reuseport_available, serve_workers

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
            parse_processes=ingest_processes(settings),
        ),
    )


def ingest_processes(settings: Settings) -> int:
    """Parser processes of one server process: as set, else the cores shared among the workers."""
    if settings.ingest_processes:
        return settings.ingest_processes
    return max(1, (os.cpu_count() or 1) // max(1, settings.workers))


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        data=getattr(args, "data", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        workers=getattr(args, "workers", None),
        tls_cert=getattr(args, "tls_cert", None),
        tls_key=getattr(args, "tls_key", None),
    )


def serve(settings: Settings, *, banner: str | None = None) -> None:
    import uvicorn

    configure_logging(settings.log_level)
    settings.data.mkdir(parents=True, exist_ok=True)
    if banner:
        print(banner, flush=True)
    settings.check()
    common: dict[str, object] = {"host": settings.host, "port": settings.port, "log_level": "warning",
                                 "access_log": False}
    if settings.tls_cert:
        common.update(ssl_certfile=settings.tls_cert, ssl_keyfile=settings.tls_key)
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
        if reuseport_available():
            # A listening socket per worker (web/workers.py): connections spread over the workers.
            config = {k: v for k, v in common.items() if k not in ("host", "port")}
            try:
                status = serve_workers(settings.host, settings.port, settings.workers, config)
            except PortInUse as exc:
                log.error("%s", exc)
                sys.exit(1)
            if status:
                sys.exit(status)
            return
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


def _duration(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``45m`` or ``90s`` (or a plain number of seconds)."""
    from archive.audit import duration_seconds

    text = text.strip()
    seconds = duration_seconds(text)
    if seconds is not None:
        return float(seconds)
    if text.isdigit():
        return float(text)
    raise ValueError(f"duration {text!r} is invalid: use e.g. 90s, 45m, 12h or 30d")


def _cli_actor() -> str:
    import getpass

    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _audit_cli(settings: Settings, event: str, detail: str, studies: list[str] | None = None) -> None:
    from archive.audit import AuditLog, AuditRecord

    log_ = AuditLog(settings.data / "audit")
    log_.append(AuditRecord(event, 200, _cli_actor(), "admin", None, "local", "CLI", "", studies or [], detail=detail))
    log_.close()


def token_command(settings: Settings, args: argparse.Namespace) -> int:
    """``tessera token create|list|revoke``: API tokens stored hashed in the archive's access.sqlite."""
    import datetime as dt

    from archive.access import AccessStore

    store = AccessStore(settings.data)
    if args.token_command == "create":
        expires = _duration(args.expires) if args.expires else None
        record, token = store.create_token(args.name, args.role, expires)
        _audit_cli(settings, "token", f"created token {record.id} ({record.name}, {record.role})")
        when = dt.datetime.fromtimestamp(record.expires, dt.UTC).isoformat() if record.expires else "never"
        print(f"token {record.id} for {record.name!r}, role {record.role}, expires {when}")
        print("keep it secret: it is shown only now")
        print(token)
    elif args.token_command == "list":
        for t in store.list_tokens():
            state = "revoked" if t.revoked else "active"
            exp = dt.datetime.fromtimestamp(t.expires, dt.UTC).isoformat(timespec="seconds") if t.expires else "never"
            print(f"{t.id}  {t.role:<11}  {state:<7}  expires {exp:<25}  {t.name}")
    else:
        count = store.revoke_token(args.id)
        _audit_cli(settings, "token", f"revoked {count} token(s) matching {args.id!r}")
        print(f"revoked {count} token(s)")
        return 0 if count else 1
    return 0


def share_command(settings: Settings, args: argparse.Namespace) -> int:
    """``tessera share link|grant|list|revoke``: share links and referrer grants."""
    from archive.access import AccessStore

    store = AccessStore(settings.data)
    if args.share_command == "link":
        link, token = store.create_share_link(args.study, _cli_actor(), _duration(args.expires))
        _audit_cli(settings, "share", f"share link {link.id}", [args.study])
        base = settings.public_url.rstrip("/") or f"http://{settings.host}:{settings.port}"
        print(f"share link {link.id} for study {args.study}")
        print(f"{base}/viewer/embed?study={args.study}#token={token}")
    elif args.share_command == "grant":
        store.grant(args.to, args.study, _cli_actor())
        _audit_cli(settings, "share", f"granted to {args.to}", [args.study])
        print(f"{args.to} may now read study {args.study}")
    elif args.share_command == "ungrant":
        ok = store.revoke_grant(args.to, args.study)
        _audit_cli(settings, "share", f"grant to {args.to} revoked", [args.study])
        print(f"{args.to} may no longer read study {args.study}" if ok else "no such grant")
        return 0 if ok else 1
    elif args.share_command == "list":
        for s in store.list_share_links():
            print(f"link  {s.id}  {'revoked' if s.revoked else 'active':<7}  {s.study_uid}")
        for grantee, study in store.list_grants():
            print(f"grant {grantee}  {study}")
    else:
        ok = store.revoke_share_link(args.id)
        _audit_cli(settings, "share", f"revoked share link {args.id}")
        print("revoked" if ok else "no such active share link")
        return 0 if ok else 1
    return 0


def audit_command(settings: Settings, args: argparse.Namespace) -> int:
    """``tessera audit --since --until``: the audit trail as JSON lines on stdout."""
    import json

    from archive.audit import AuditLog, parse_when

    since = parse_when(args.since) if args.since else None
    until = parse_when(args.until) if args.until else None
    for record in AuditLog(settings.data / "audit").read(since, until):
        sys.stdout.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")
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
    from archive.access import AccessStore

    # Each start makes a fresh admin token for the printed sign-in link and retires the previous one.
    store = AccessStore(settings.data)
    store.revoke_token("demo")
    _record, token = store.create_token("demo", "admin", 7 * 86400)
    url = f"http://{settings.host}:{settings.port}"
    serve(settings, banner=(f"Tessera demo: open {url}/viewer/#token={token}\n"
                            f"(DICOMweb root {url}/dicomweb; send 'Authorization: Bearer {token}')"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tessera", description="Tessera cloud PACS image server")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the DICOMweb server")
    p_serve.add_argument("--tls-cert", help="PEM certificate: serve HTTPS (TESSERA_TLS_CERT)")
    p_serve.add_argument("--tls-key", help="PEM private key (TESSERA_TLS_KEY)")
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
    p_token = sub.add_parser("token", help="API tokens: create, list, revoke")
    tsub = p_token.add_subparsers(dest="token_command", required=True)
    t_create = tsub.add_parser("create", help="create a token and print it (alone on the last line)")
    t_create.add_argument("--role", required=True, choices=["admin", "radiologist", "uploader", "referrer"])
    t_create.add_argument("--name", required=True, help="who or what holds it (shown in the audit trail)")
    t_create.add_argument("--expires", help="lifetime, e.g. 90d, 12h (default: no expiry)")
    tsub.add_parser("list", help="list tokens (never their secrets)")
    t_revoke = tsub.add_parser("revoke", help="revoke a token by id, or every token of a name")
    t_revoke.add_argument("id")
    p_share = sub.add_parser("share", help="share links and referrer grants")
    ssub = p_share.add_subparsers(dest="share_command", required=True)
    s_link = ssub.add_parser("link", help="make an expiring link that reads one study")
    s_link.add_argument("--study", required=True)
    s_link.add_argument("--expires", default="7d", help="lifetime (default 7d)")
    s_grant = ssub.add_parser("grant", help="let a referrer read a study (token name, or oidc:<name> for OIDC users)")
    s_grant.add_argument("--study", required=True)
    s_grant.add_argument("--to", required=True)
    s_ungrant = ssub.add_parser("ungrant", help="take a study back from a referrer")
    s_ungrant.add_argument("--study", required=True)
    s_ungrant.add_argument("--to", required=True)
    ssub.add_parser("list", help="list share links and grants")
    s_revoke = ssub.add_parser("revoke", help="revoke a share link")
    s_revoke.add_argument("id")
    p_audit = sub.add_parser("audit", help="print the audit trail as JSON lines")
    p_audit.add_argument("--since", help="ISO date/time (UTC unless given), or a time ago: 24h, 7d")
    p_audit.add_argument("--until", help="ISO date/time, or a time ago: 1h")
    for p in (t_create, t_revoke, s_link, s_grant, s_ungrant, s_revoke, p_audit):
        p.add_argument("--data", help="archive folder (TESSERA_DATA)")
    tsub.choices["list"].add_argument("--data", help="archive folder (TESSERA_DATA)")
    ssub.choices["list"].add_argument("--data", help="archive folder (TESSERA_DATA)")
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
        elif args.command == "token":
            return token_command(settings, args)
        elif args.command == "share":
            return share_command(settings, args)
        elif args.command == "audit":
            return audit_command(settings, args)
        elif args.command == "renditions":
            return renditions(settings, run=args.run)
        elif args.command == "import":
            counts = import_files(settings, args.paths)
            return 1 if counts["failed"] and not (counts["stored"] or counts["present"]) else 0
    except SettingsError as exc:
        print(f"tessera: {exc}", file=sys.stderr)
        return 2
    except (ValueError, ArchiveError) as exc:
        print(f"tessera: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
