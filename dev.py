#!/usr/bin/env python3
"""Set up Tessera in ./.venv (only python3 >= 3.11 needed) and run it or its tests.

    python3 dev.py demo     # set up, load a demo study, serve it and print the URL
    python3 dev.py test     # set up, run the whole test suite (extra arguments go to pytest)

Set-up is idempotent: the virtual environment is made once and the project is reinstalled only when
pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".tessera-installed"


def setup() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 -- dev.py runs on whatever python3 the user has
        sys.exit(f"Tessera needs Python >= 3.11, this is {sys.version.split()[0]}")
    if not PY.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    print("installing Tessera and its dependencies into .venv ...", flush=True)
    subprocess.run([str(PY), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(PY), "-m", "pip", "install", "-q", "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(wanted + "\n")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "setup"):
        print(__doc__)
        return 2
    setup()
    command, rest = argv[0], argv[1:]
    os.chdir(ROOT)
    if command == "setup":
        return 0
    if command == "demo":
        os.execv(str(VENV / "bin" / "tessera"), ["tessera", "demo", *rest])
    return subprocess.run([str(PY), "-m", "pytest", *rest], check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
