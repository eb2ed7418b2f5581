"""The run catalog as the API sees it: published runs listed from ``{products}/{run_id}/manifest.json``.

Publishing is atomic (a run is written aside and renamed into place), so a
folder named like a run id with a manifest is complete. The listing is cached
and refreshed when the products folder changes (or every couple of seconds,
to see a manifest rewritten in place), so that the hot path costs one ``stat``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fuxiops.errors import DataError
from fuxiops.logs import get_logger

log = get_logger("fuxiops.services.catalog")

RUN_ID_RE = re.compile(r"^\d{10}$")
#: Manifest statuses of runs that are listed but not served by default (``latest`` skips them). Every
#: other status is served; statuses other than NORMAL (degraded, cold_start, ...) are flagged to users.
NOT_SERVABLE = frozenset({"failed", "error", "aborted", "incomplete", "withdrawn", "deleted", "pending", "running"})
NORMAL = frozenset({"published", "complete", "completed", "ok"})
MANIFEST = "manifest.json"
SERVING_STORE = "forecast.zarr"


@dataclass(frozen=True)
class FileEntry:
    """One downloadable product file of a run, as its manifest lists it."""

    name: str
    format: str
    size: int | None
    sha256: str | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunInfo:
    """A published run: its folder and what its manifest says."""

    run_id: str
    path: Path
    cycle_time: datetime
    status: str
    model: dict[str, Any]
    files: dict[str, FileEntry]
    manifest: dict[str, Any]
    #: SHA-256 of the manifest bytes: identifies this publication of the run (caches key on it).
    fingerprint: str
    mtime_ns: int

    @property
    def servable(self) -> bool:
        return self.status.lower() not in NOT_SERVABLE

    @property
    def flagged(self) -> bool:
        """Served, but users should know (degraded, cold start, ...)."""
        return self.status.lower() not in NORMAL

    @property
    def store_path(self) -> Path:
        return self.path / SERVING_STORE

    @property
    def cycle_time_iso(self) -> str:
        return self.cycle_time.strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def model_name(self) -> str:
        m = self.model
        for key in ("name", "checkpoint", "id", "preset"):
            if isinstance(m.get(key), str):
                return str(m[key])
        return "unknown"


def _parse_time(value: Any, run_id: str) -> datetime:
    if isinstance(value, str) and value:
        s = value.strip().replace("Z", "+00:00")
        try:
            t = datetime.fromisoformat(s)
        except ValueError:
            t = None
        if t is not None:
            if t.tzinfo is not None:
                t = t.astimezone(timezone.utc).replace(tzinfo=None)
            return t
    # The run id is the cycle time (YYYYMMDDHH) by convention.
    return datetime.strptime(run_id, "%Y%m%d%H")


def _parse_files(raw: Any) -> dict[str, FileEntry]:
    items: list[tuple[str, dict[str, Any]]] = []
    if isinstance(raw, list):
        items = [(str(f.get("name", "")), f) for f in raw if isinstance(f, dict)]
    elif isinstance(raw, dict):
        items = [(str(k), v if isinstance(v, dict) else {}) for k, v in raw.items()]
    out: dict[str, FileEntry] = {}
    for name, f in items:
        if not name:
            continue
        size = f.get("size", f.get("bytes"))
        sha = f.get("sha256")
        fmt = f.get("format") or Path(name).suffix.lstrip(".") or "bin"
        extra = {k: v for k, v in f.items() if k not in ("name", "format", "size", "bytes", "sha256")}
        out[name] = FileEntry(name=name, format=str(fmt), size=int(size) if isinstance(size, (int, float)) else None,
                              sha256=str(sha).lower() if sha else None, extra=extra)
    return out


def read_manifest(run_dir: Path) -> RunInfo:
    """Parse ``run_dir/manifest.json``; raises DataError naming the problem if it is unusable."""
    p = run_dir / MANIFEST
    raw = p.read_bytes()
    try:
        m = json.loads(raw)
    except json.JSONDecodeError as e:
        raise DataError(f"run {run_dir.name}: manifest.json is not valid JSON ({e.msg})") from None
    if not isinstance(m, dict):
        raise DataError(f"run {run_dir.name}: manifest.json must be an object")
    run_id = str(m.get("run_id") or run_dir.name)
    if run_id != run_dir.name:
        raise DataError(f"run folder {run_dir.name} holds a manifest for run {run_id}")
    cycle = _parse_time(m.get("cycle_time") or m.get("reference_time") or m.get("time"), run_id)
    model = m.get("model") or {}
    if isinstance(model, str):
        model = {"name": model}
    return RunInfo(run_id=run_id, path=run_dir, cycle_time=cycle, status=str(m.get("status", "published")),
                   model=dict(model) if isinstance(model, dict) else {"name": str(model)},
                   files=_parse_files(m.get("files")), manifest=m, fingerprint=hashlib.sha256(raw).hexdigest(),
                   mtime_ns=p.stat().st_mtime_ns)


class RunCatalog:
    """Published runs under one products folder, newest first."""

    def __init__(self, root: str | os.PathLike[str], recheck_seconds: float = 2.0) -> None:
        self.root = Path(root)
        self.recheck_seconds = recheck_seconds
        self._lock = threading.Lock()
        self._runs: dict[str, RunInfo] = {}
        self._ordered: list[RunInfo] = []
        self._root_mtime: int | None = None
        self._checked_at = 0.0

    # -- refresh -------------------------------------------------------------
    def _root_stamp(self) -> int | None:
        try:
            return self.root.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def refresh(self, force: bool = False) -> None:
        stamp = self._root_stamp()
        now = time.monotonic()
        if not force and stamp == self._root_mtime and now - self._checked_at < self.recheck_seconds:
            return
        with self._lock:
            runs: dict[str, RunInfo] = {}
            if stamp is not None:
                for d in self.root.iterdir():
                    if not RUN_ID_RE.match(d.name) or not d.is_dir():
                        continue  # temporary folders of an atomic publish, stray files
                    mp = d / MANIFEST
                    try:
                        mtime = mp.stat().st_mtime_ns
                    except FileNotFoundError:
                        continue
                    old = self._runs.get(d.name)
                    if old is not None and old.mtime_ns == mtime:
                        runs[d.name] = old
                        continue
                    try:
                        runs[d.name] = read_manifest(d)
                    except (DataError, OSError, ValueError) as e:
                        log.warning("skipping run folder %s: %s", d.name, e)
            self._runs = runs
            self._ordered = sorted(runs.values(), key=lambda r: (r.cycle_time, r.run_id), reverse=True)
            self._root_mtime = stamp
            self._checked_at = now

    # -- queries -------------------------------------------------------------
    def runs(self) -> list[RunInfo]:
        """All runs, newest first."""
        self.refresh()
        return list(self._ordered)

    def get(self, run_id: str) -> RunInfo | None:
        self.refresh()
        return self._runs.get(run_id)

    def latest(self) -> RunInfo | None:
        """The newest servable run (any status but the failure ones)."""
        self.refresh()
        for r in self._ordered:
            if r.servable:
                return r
        return None

    def delete(self, run_id: str) -> None:
        """Remove a run folder: renamed aside first so that readers never see half a run."""
        if not RUN_ID_RE.match(run_id):
            raise DataError(f"run id must be YYYYMMDDHH, got {run_id!r}")
        src = self.root / run_id
        trash = self.root / f".deleted-{run_id}-{os.getpid()}-{time.monotonic_ns()}"
        os.replace(src, trash)
        shutil.rmtree(trash, ignore_errors=True)
        self.refresh(force=True)
