"""Start and stop a Tessera server for benchmarks, on loopback.

Responsible for: running `<venv>/bin/tessera serve --host 127.0.0.1 --port P --data DIR [--workers N]`
with `TESSERA_FSYNC=1|0`, waiting for `GET /healthz` to answer 200 (deadline, no fixed sleep),
then for every worker to listen and the server to go idle (the workers after the first start while
the first already answers), checking with `ss -ltnp` that it listens on loopback only, and
terminating it. Must not import
Tessera's packages: the benchmark talks to it over HTTP only, exactly as it talks to Orthanc.

CLI:  .venv/bin/python bench/tessera_server.py [--workdir bench/work/tessera] [--port 8044] [--fsync] [--hold]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procs import (
    ServerStartError,
    check_loopback_only,
    exit_on_signals,
    port_in_use,
    stop_process,
    wait_http_ok,
    wait_settled,
)

BENCH_DIR = Path(__file__).resolve().parent
VENV_BIN = BENCH_DIR.parent / ".venv" / "bin"


def tessera_binary() -> Path:
    """The `tessera` console script of the project venv; raises FileNotFoundError when absent."""
    path = VENV_BIN / "tessera"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: install the project (`.venv/bin/pip install -e .`)")
    return path


def tessera_available() -> bool:
    """True when the `tessera` console script exists in the venv."""
    return (VENV_BIN / "tessera").exists()


@contextlib.contextmanager
def tessera(workdir: Path, *, port: int, fsync: bool, workers: int | None = None, fresh: bool = True,
            deadline_s: float = 60.0, quiet: bool = False, binary: Path | None = None,
            env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Run Tessera; yield its DICOMweb base URL (`http://127.0.0.1:P/dicomweb`).

    `fresh` wipes `workdir` first, so every run starts on empty storage. Raises FileNotFoundError when
    the `tessera` script is missing, ServerStartError when the port is taken or `/healthz` does not
    answer 200 in time, NotLoopbackError when it listens beyond loopback. `binary` overrides the venv's
    `tessera` script (for testing this harness with a stand-in). `env`: more variables for the server
    (e.g. `TESSERA_*` settings), over this process's environment.
    """
    binary = binary or tessera_binary()
    if port_in_use(port):
        raise ServerStartError(f"port {port} is already in use")
    workdir = Path(workdir).resolve()
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    cmd = [str(binary), "serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(data)]
    if workers:
        cmd += ["--workers", str(workers)]
    # Orthanc runs with authentication off in these benchmarks, so Tessera gets anonymous admin access
    # on its loopback bind (still checked and audited per request); set TESSERA_ANONYMOUS_ROLE= to
    # measure with bearer tokens instead.
    server_env = {"TESSERA_ANONYMOUS_ROLE": "admin", **os.environ, **(env or {}),
                  "TESSERA_FSYNC": "1" if fsync else "0"}
    log = (workdir / "tessera.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=server_env, start_new_session=True)
    try:
        root = f"http://127.0.0.1:{port}"
        try:
            took = wait_http_ok(f"{root}/healthz", proc, deadline_s=deadline_s)
        except ServerStartError as exc:
            log.flush()
            tail = (workdir / "tessera.log").read_text(errors="replace").splitlines()[-15:]
            raise ServerStartError(f"{exc}; last log lines:\n" + "\n".join(tail)) from None
        if not quiet:
            print(f"Tessera up in {took:.2f} s (pid {proc.pid}, fsync={fsync}, workers={workers}, "
                  f"log {log.name})")
        check_loopback_only(proc.pid, "Tessera", quiet=quiet)
        # /healthz answers as soon as the first worker is ready; the others start after it (web/workers.py).
        listeners = workers or int(server_env.get("TESSERA_WORKERS") or 0) or os.cpu_count() or 1
        settled = wait_settled(proc, port, listeners)
        if not quiet:
            print(f"Tessera settled {settled:.2f} s after /healthz")
        yield f"{root}/dicomweb"
    finally:
        stop_process(proc)
        log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=BENCH_DIR / "work" / "tessera")
    parser.add_argument("--port", type=int, default=8044)
    parser.add_argument("--fsync", action="store_true", help="TESSERA_FSYNC=1 (durable writes)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--hold", action="store_true", help="keep running until Ctrl-C")
    args = parser.parse_args(argv)
    exit_on_signals()
    with tessera(args.workdir, port=args.port, fsync=args.fsync, workers=args.workers) as base:
        print(base, flush=True)
        if args.hold:
            print("holding; Ctrl-C to stop", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
