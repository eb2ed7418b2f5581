"""The state store: backgrounds and analyses per cycle as Zarr on any fsspec URL, written atomically.

Layout under the store root::

    {kind}/{run_id}/{version}.zarr     one immutable Zarr store per write
    {kind}/{run_id}/CURRENT.json       pointer to the committed version (written last)

A write goes to a fresh version and only then moves the pointer (one small
object: an atomic rename locally, a single PUT on object stores). A crash
mid-write leaves an orphan version that no reader sees, so a failed cycle
never corrupts the background the next cycle reads. ``kind`` is
``background`` (the +6 h forecast of the previous cycle, or a cold-start
state) or ``analysis``.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from typing import Any, Literal

import fsspec
import xarray as xr

from fuxiops.errors import DataError
from fuxiops.logs import get_logger
from fuxiops.pipeline.cycle.times import iso, run_id, utcnow

log = get_logger("fuxiops.cycle.store")

Kind = Literal["background", "analysis"]
KINDS: tuple[str, ...] = ("background", "analysis")
POINTER = "CURRENT.json"


class StateStore:
    """Backgrounds and analyses of each cycle under one fsspec URL (local folder by default)."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url
        self.storage_options = dict(storage_options or {})
        self.fs, self.root = fsspec.core.url_to_fs(url, **self.storage_options)
        self._local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    # -- paths ---------------------------------------------------------------
    def _dir(self, kind: str, cycle_time: datetime) -> str:
        if kind not in KINDS:
            raise DataError(f"unknown state kind {kind!r}; allowed: {', '.join(KINDS)}")
        return f"{self.root.rstrip('/')}/{kind}/{run_id(cycle_time)}"

    def _zarr_target(self, path: str) -> Any:
        return path if self._local else self.fs.get_mapper(path)

    # -- reads ---------------------------------------------------------------
    def pointer(self, kind: Kind, cycle_time: datetime) -> dict[str, Any] | None:
        """The committed version's record, or None if nothing was committed."""
        p = f"{self._dir(kind, cycle_time)}/{POINTER}"
        try:
            with self.fs.open(p, "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None

    def exists(self, kind: Kind, cycle_time: datetime) -> bool:
        return self.pointer(kind, cycle_time) is not None

    def get(self, kind: Kind, cycle_time: datetime) -> xr.Dataset | None:
        """The committed state of ``kind`` for ``cycle_time`` (loaded into memory), or None."""
        ptr = self.pointer(kind, cycle_time)
        if ptr is None:
            return None
        path = f"{self._dir(kind, cycle_time)}/{ptr['version']}"
        try:
            with xr.open_zarr(self._zarr_target(path), consolidated=False) as ds:
                return ds.load()
        except (FileNotFoundError, KeyError, ValueError) as e:
            raise DataError(f"state store {self.url}: {kind} of {run_id(cycle_time)} points to {path}, which "
                            f"cannot be read ({e})") from e

    def cycles(self, kind: Kind) -> list[str]:
        """Run ids that have a committed ``kind``, oldest first."""
        base = f"{self.root.rstrip('/')}/{kind}"
        try:
            entries = self.fs.ls(base, detail=False)
        except FileNotFoundError:
            return []
        out = []
        for e in entries:
            name = str(e).rstrip("/").rsplit("/", 1)[-1]
            if name.isdigit() and self.fs.exists(f"{base}/{name}/{POINTER}"):
                out.append(name)
        return sorted(out)

    # -- writes --------------------------------------------------------------
    def put(self, kind: Kind, cycle_time: datetime, ds: xr.Dataset, **provenance: Any) -> str:
        """Write ``ds`` as the ``kind`` of ``cycle_time`` and commit it; returns the version name."""
        d = self._dir(kind, cycle_time)
        version = f"{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.zarr"
        path = f"{d}/{version}"
        self.fs.makedirs(d, exist_ok=True)
        out = ds.copy()
        out.attrs = {**ds.attrs, "state_kind": kind, "cycle_time": iso(cycle_time),
                     **{k: (v if isinstance(v, (str, int, float, bool)) else json.dumps(v, default=str))
                        for k, v in provenance.items() if v is not None}}
        for v in out.variables.values():
            v.encoding = {}
        out.to_zarr(self._zarr_target(path), mode="w", consolidated=False, zarr_format=3)
        record = {"version": version, "written": iso(utcnow()), "kind": kind, "cycle_time": iso(cycle_time),
                  "provenance": json.loads(json.dumps(provenance, default=str))}
        self._write_pointer(f"{d}/{POINTER}", record)
        self._prune(d, keep=version)
        log.info("state store: committed %s %s", kind, run_id(cycle_time),
                 extra={"fields": {"kind": kind, "version": version}})
        return version

    def _write_pointer(self, path: str, record: dict[str, Any]) -> None:
        data = json.dumps(record, indent=1).encode()
        if self._local:
            tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # atomic on POSIX
        else:
            self.fs.pipe_file(path, data)  # one PUT: atomic on object stores

    def _prune(self, d: str, keep: str) -> None:
        """Remove superseded versions (best effort: an orphan costs space, never correctness)."""
        try:
            for e in self.fs.ls(d, detail=False):
                name = str(e).rstrip("/").rsplit("/", 1)[-1]
                if name.endswith(".zarr") and name != keep:
                    self.fs.rm(f"{d}/{name}", recursive=True)
        except OSError as e:  # pragma: no cover - e.g. a concurrent reader on an odd filesystem
            log.warning("state store: could not prune old versions in %s: %s", d, e)

    def delete(self, kind: Kind, cycle_time: datetime) -> None:
        d = self._dir(kind, cycle_time)
        if self.fs.exists(d):
            self.fs.rm(d, recursive=True)
