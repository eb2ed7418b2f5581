"""Fixtures of the cycle tests: a throwaway PostgreSQL server (when the binaries exist)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

# The synthetic testbed helpers (cycle_testbed_data.py) sit next to the tests (importlib import mode).
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _pg_bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    w = shutil.which("initdb")
    return Path(w).resolve().parent if w else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL cluster on 127.0.0.1 (random port) for the session; skipped without binaries."""
    import importlib.util

    if importlib.util.find_spec("psycopg") is None:  # found, not imported: see pg_checks.py
        pytest.skip("psycopg 3 not installed (pip install 'psycopg[binary]')")
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install -y postgresql)")
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' OS user to run the server")
        prefix = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="fuxiops-pg-"))
    os.chmod(root, 0o777)
    data = root / "data"
    port = _free_port()
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "fuxiops", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, env=env, cwd="/", timeout=120)
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60",
                        "-o", f"-h 127.0.0.1 -p {port} -k '' -c fsync=off", "start"],
                       check=True, capture_output=True, env=env, cwd="/", timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {getattr(e, 'stderr', b'')!r}")
    try:
        # A database of our own (createdb: psycopg is only ever loaded in subprocesses, see pg_checks.py).
        subprocess.run([*prefix, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "fuxiops",
                        "catalog"], check=True, capture_output=True, env=env, cwd="/", timeout=60)
        yield f"postgresql+psycopg://fuxiops@127.0.0.1:{port}/catalog"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, env=env, cwd="/", timeout=60)
        shutil.rmtree(root, ignore_errors=True)
