"""One cycle chain at a time: a deployment-wide lock around each cycle.

With a PostgreSQL catalog the lock is a session-level advisory lock on the
catalog database, so cycles on different machines (process, Docker and
Kubernetes workers) exclude each other. With SQLite (a single machine) it is an
``flock`` on ``{home}/cycle.lock``. A cycle that finds the lock held waits: the
running cycle is its background's producer (or an older one), so waiting is
exactly "a cycle waits for its background's cycle".
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa

from fuxiops.errors import FuxiopsError
from fuxiops.logs import get_logger

log = get_logger("fuxiops.cycle.lock")

_ADVISORY_KEY = 727384002


class LockTimeout(FuxiopsError):
    """Another cycle held the lock for longer than the wait allowed."""


@contextlib.contextmanager
def cycle_lock(catalog_url: str, home: str, timeout_s: float = 6 * 3600, poll_s: float = 1.0) -> Iterator[None]:
    """Hold the deployment's cycle lock for the block (waiting up to ``timeout_s``)."""
    url = sa.engine.make_url(catalog_url)
    if url.get_backend_name() == "postgresql":
        with _pg_lock(catalog_url, timeout_s, poll_s):
            yield
    else:
        with _file_lock(Path(home).expanduser() / "cycle.lock", timeout_s, poll_s):
            yield


@contextlib.contextmanager
def _file_lock(path: Path, timeout_s: float, poll_s: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    log.info("another cycle is running; waiting for the cycle lock %s", path)
                    waited = True
                if time.monotonic() > deadline:
                    raise LockTimeout(f"waited {timeout_s:.0f} s for the cycle lock {path}; another cycle holds it")
                time.sleep(poll_s)
        # The holder's pid helps an operator find a stuck cycle; the kernel frees the lock if it dies.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def _pg_lock(catalog_url: str, timeout_s: float, poll_s: float) -> Iterator[None]:
    from fuxiops.pipeline.cycle.runs import make_engine

    engine = make_engine(catalog_url)
    try:
        with engine.connect() as conn:
            deadline = time.monotonic() + timeout_s
            waited = False
            while not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": _ADVISORY_KEY}).scalar():
                conn.rollback()
                if not waited:
                    log.info("another cycle is running; waiting for the cycle lock (PostgreSQL advisory lock)")
                    waited = True
                if time.monotonic() > deadline:
                    raise LockTimeout(f"waited {timeout_s:.0f} s for the cycle lock; another cycle holds it")
                time.sleep(poll_s)
            conn.commit()
            try:
                yield
            finally:
                # The server frees session locks if this connection dies (a killed worker).
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _ADVISORY_KEY})
                conn.commit()
    finally:
        engine.dispose()
