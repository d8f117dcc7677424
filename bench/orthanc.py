"""A private Orthanc 1.10.1 (+ DICOMweb 1.7, GDCM 1.5) on loopback, as a benchmark peer.

Responsible for: installing the Debian packages when the binary is missing, writing a per-run JSON
configuration and storage folder under a work dir, keeping Orthanc on loopback (LD_PRELOAD shim
`bind_loopback.c`, since Orthanc has no bind-address option), waiting for `/system`, checking the
listening sockets with `ss -ltnp`, and stopping it. Must not touch the system service's config or
storage (/etc/orthanc, /var/lib/orthanc) and must never listen beyond 127.0.0.1 / ::1.

CLI:  .venv/bin/python bench/orthanc.py [--workdir bench/work/orthanc] [--port 8043] [--sync] [--hold]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procs import (
    ServerStartError,
    check_loopback_only,
    exit_on_signals,
    free_port,
    port_in_use,
    stop_process,
    wait_http_ok,
)

BENCH_DIR = Path(__file__).resolve().parent
SHIM_SOURCE = BENCH_DIR / "bind_loopback.c"
SHIM_LIBRARY = BENCH_DIR / "work" / "bind_loopback.so"
PACKAGES = ("orthanc", "orthanc-dicomweb", "orthanc-gdcm")
PLUGIN_NAMES = ("libOrthancDicomWeb.so", "libOrthancGdcm.so")


def orthanc_binary() -> str:
    """Path of the Orthanc executable, installing the Debian packages if it is missing."""
    found = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    if found:
        return found
    print(f"Orthanc not found: apt-get install -y {' '.join(PACKAGES)} (service start is blocked by "
          "policy-rc.d on this machine; we stop the service below in any case)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", *PACKAGES], check=True, env=env)
    stop_system_service()
    return "/usr/sbin/Orthanc"


def plugin_paths() -> list[str]:
    """The DICOMweb and GDCM plugin libraries, as listed by `dpkg -L` of their packages."""
    out = subprocess.run(["dpkg", "-L", "orthanc-dicomweb", "orthanc-gdcm"],
                         capture_output=True, text=True, check=True).stdout
    paths = [line for line in out.splitlines() if Path(line).name in PLUGIN_NAMES]
    if len(paths) != len(PLUGIN_NAMES):
        raise FileNotFoundError(f"expected {PLUGIN_NAMES} in dpkg -L output, found {paths}")
    return paths


def stop_system_service() -> None:
    """Stop the Debian `orthanc` service if it runs: it would share nothing with us but ports and CPU."""
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "Orthanc" in cmdline and "/etc/orthanc" in cmdline:
            print(f"system Orthanc service is running (pid {proc_dir.name}): invoke-rc.d orthanc stop")
            subprocess.run(["invoke-rc.d", "orthanc", "stop"], check=False)


def build_shim() -> Path:
    """Compile the bind() shim into bench/work/ when missing or older than its source."""
    if not SHIM_LIBRARY.exists() or SHIM_LIBRARY.stat().st_mtime < SHIM_SOURCE.stat().st_mtime:
        SHIM_LIBRARY.parent.mkdir(parents=True, exist_ok=True)
        cmd = ["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-o", str(SHIM_LIBRARY), str(SHIM_SOURCE), "-ldl"]
        print("building loopback shim:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return SHIM_LIBRARY


def orthanc_config(storage: Path, *, http_port: int, dicom_port: int, sync_storage: bool) -> dict[str, Any]:
    """A best-case configuration for a single-node Orthanc on a fast local disk.

    Fairness notes (see /work/shared/FACTS.md): built-in codecs before GDCM, no HTTP gzip, no storage
    compression, a storage cache larger than the series, more HTTP threads than client concurrency,
    no lookup of DICOM files on C-FIND/QIDO. DICOMweb metadata stays "Full": in plugin 1.7,
    "MainDicomTags" and "Extrapolate" drop per-instance tags (ImagePositionPatient, window,
    rescale, pixel spacing...), so they would not return full metadata.
    """
    return {
        "Name": "TesseraBenchPeer",
        "StorageDirectory": str(storage / "storage"),
        "IndexDirectory": str(storage / "index"),
        "TemporaryDirectory": str(storage / "tmp"),
        "StorageCompression": False,
        "SyncStorageArea": sync_storage,
        "MaximumStorageCacheSize": 4096,  # MB; the 300-slice series is ~160 MB
        "MaximumStorageSize": 0,
        "MaximumPatientCount": 0,
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "HttpThreadsCount": 32,
        "HttpCompressionEnabled": False,
        "HttpTimeout": 60,
        "KeepAlive": True,
        "TcpNoDelay": True,
        "HttpDescribeErrors": True,
        "RemoteAccessAllowed": False,  # loopback anyway; see bind_loopback.c
        "AuthenticationEnabled": False,
        "SslEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": "TESSERABENCH",
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        "DicomModalities": {},
        "OrthancPeers": {},
        "BuiltinDecoderTranscoderOrder": "Before",
        "StorageAccessOnFind": "Never",
        "LimitFindResults": 0,
        "LimitFindInstances": 0,
        "OverwriteInstances": False,
        "SaveJobs": False,
        "JobsHistorySize": 10,
        "ConcurrentJobs": 2,
        "LuaScripts": [],
        "Plugins": plugin_paths(),
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "EnableWado": False,
            "Ssl": False,
            "StudiesMetadata": "Full",
            "SeriesMetadata": "Full",
        },
        "Gdcm": {"Enable": True},
    }


@contextlib.contextmanager
def orthanc(workdir: Path, *, http_port: int, sync_storage: bool, dicom_port: int | None = None,
            fresh: bool = True, deadline_s: float = 60.0, quiet: bool = False) -> Iterator[str]:
    """Run a private Orthanc; yield its DICOMweb base URL (`http://127.0.0.1:P/dicom-web`).

    `fresh` wipes `workdir` first, so every run starts on empty storage. Raises ServerStartError when
    the port is taken or Orthanc does not answer `/system` in time, NotLoopbackError when it listens
    beyond loopback.
    """
    binary = orthanc_binary()
    stop_system_service()
    if port_in_use(http_port):
        raise ServerStartError(f"HTTP port {http_port} is already in use")
    dicom_port = dicom_port or free_port()
    workdir = Path(workdir).resolve()
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    for sub in ("storage", "index", "tmp"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    config_path = workdir / "orthanc.json"
    config = orthanc_config(workdir, http_port=http_port, dicom_port=dicom_port, sync_storage=sync_storage)
    config_path.write_text(json.dumps(config, indent=2))
    env = {**os.environ, "LD_PRELOAD": str(build_shim()), "TCP_NODELAY": "1"}
    log = (workdir / "orthanc.log").open("wb")
    proc = subprocess.Popen([binary, str(config_path)], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    try:
        root = f"http://127.0.0.1:{http_port}"
        try:
            took = wait_http_ok(f"{root}/system", proc, deadline_s=deadline_s)
        except ServerStartError as exc:
            log.flush()
            tail = (workdir / "orthanc.log").read_text(errors="replace").splitlines()[-15:]
            raise ServerStartError(f"{exc}; last log lines:\n" + "\n".join(tail)) from None
        if not quiet:
            print(f"Orthanc up in {took:.2f} s (pid {proc.pid}, sync={sync_storage}, log {log.name})")
        check_loopback_only(proc.pid, "Orthanc", quiet=quiet)
        yield f"{root}/dicom-web"
    finally:
        stop_process(proc)
        log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=BENCH_DIR / "work" / "orthanc")
    parser.add_argument("--port", type=int, default=8043)
    parser.add_argument("--sync", action="store_true", help="SyncStorageArea=true (fsync every file)")
    parser.add_argument("--hold", action="store_true", help="keep running until Ctrl-C")
    args = parser.parse_args(argv)
    exit_on_signals()
    with orthanc(args.workdir, http_port=args.port, sync_storage=args.sync) as base:
        root = base.rsplit("/dicom-web", 1)[0]
        with urllib.request.urlopen(f"{root}/system", timeout=5) as resp:
            system = json.load(resp)
        print(f"{base}  (Orthanc {system.get('Version')}, plugins {json.dumps(plugin_paths())})")
        if args.hold:
            print("holding; Ctrl-C to stop", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
