"""GRIB2 product writer: one file per lead time plus a JSON-lines message index per file.

Fields are packed by our numpy encoder (``grib2_codec``) on a thread pool
while the calling thread writes finished messages in channel order, hashing
them on the way so that the manifest needs no second read. Files are flushed
and fsync'ed by a background thread while the next step encodes. The index
follows the ECMWF open-data ``.index`` layout (one JSON object per message
with ``_offset`` and ``_length``), so range-request clients can fetch single
fields.
"""

from __future__ import annotations

import hashlib
import json
import os
import string
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from fuxiops.catalog import Channel
from fuxiops.config import GribConfig
from fuxiops.errors import ConfigError

from .base import ProductWriter, RunMeta, StepData, WrittenFile
from .grib2_codec import Identity, LatLonGeometry, encode_field, repack_ccsds, resolve_centre

_TEMPLATE_FIELDS = {"run", "step", "date", "time"}


def check_template(template: str) -> None:
    """A filename template must name the step and use only known fields."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise ConfigError(f"GRIB filename template {template!r} is malformed: {e}") from None
    unknown = fields - _TEMPLATE_FIELDS
    if unknown:
        raise ConfigError(f"GRIB filename template {template!r} uses unknown field(s) {sorted(unknown)}; "
                          f"allowed: {sorted(_TEMPLATE_FIELDS)}")
    if "step" not in fields:
        raise ConfigError(f"GRIB filename template {template!r} must contain {{step}}: one file per lead time")
    if "/" in template or template.startswith("."):
        raise ConfigError(f"GRIB filename template {template!r} must be a plain file name")


def index_name(grib_name: str) -> str:
    """``2023010100-6h.grib2`` -> ``2023010100-6h.index`` (as ECMWF open data names them)."""
    stem = grib_name.rsplit(".", 1)[0] if "." in grib_name else grib_name
    return stem + ".index"


class _HashingFile:
    """A binary file that hashes and counts what is written to it."""

    def __init__(self, path: Path, hash_: bool = True) -> None:
        self.path = path
        self.fh: BinaryIO = open(path, "wb", buffering=0)
        self.sha: Any = hashlib.sha256() if hash_ else None
        self.size = 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = self.fh.write(view)
            if n is None:  # pragma: no cover - only for non-blocking files
                raise OSError("short write")
            view = view[n:]
        if self.sha is not None:
            self.sha.update(data)
        self.size += len(data)

    def finish(self) -> WrittenFile:
        os.fsync(self.fh.fileno())
        self.fh.close()
        return WrittenFile(self.path.name, "grib2", self.size, self.sha.hexdigest() if self.sha else "")

    def discard(self) -> None:
        self.fh.close()


class Grib2Writer(ProductWriter):
    """GRIB2 edition 2, simple packing (default 16 bits) or CCSDS, one file per lead time."""

    format = "grib2"

    def __init__(self, config: GribConfig | None = None, workers: int | None = None, sha256: bool = True,
                 **overrides: Any) -> None:
        """``sha256``: hash files while writing them (for the manifest) instead of re-reading them later."""
        cfg = config or GribConfig()
        if overrides:
            cfg = cfg.model_copy(update=overrides)
        check_template(cfg.filename_template)
        self.cfg = cfg
        self.identity = Identity(centre=resolve_centre(cfg.centre), subcentre=cfg.subcentre,
                                 generating_process=cfg.generating_process)
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.sha256 = sha256
        self._pool: ThreadPoolExecutor | None = None
        self._finisher: ThreadPoolExecutor | None = None
        self._pending: Future[list[WrittenFile]] | None = None
        self._files: list[WrittenFile] = []
        self._open: list[_HashingFile] = []

    def open(self, run: RunMeta, directory: Path) -> None:
        self.run = run
        self.dir = directory
        self.geometry = LatLonGeometry.from_coords(run.grid.latitudes, run.grid.longitudes)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="grib2-encode")
        self._finisher = ThreadPoolExecutor(1, thread_name_prefix="grib2-fsync")
        self._names: set[str] = set()

    def filename(self, step: int) -> str:
        t = self.run.reference_time
        return self.cfg.filename_template.format(run=self.run.run_id, step=step, date=t.strftime("%Y%m%d"),
                                                 time=t.strftime("%H%M"))

    def _encode(self, values: np.ndarray, channel: Channel, step: int) -> bytes:
        msg = encode_field(values, channel, geometry=self.geometry, reference_time=self.run.reference_time,
                           step_hours=step, identity=self.identity, bits_per_value=self.cfg.bits_per_value)
        if self.cfg.packing == "grid_ccsds":
            msg = repack_ccsds(msg)
        return msg

    def _index_entry(self, channel: Channel, step: int, offset: int, length: int) -> dict[str, Any]:
        v = channel.variable
        t = self.run.reference_time
        entry: dict[str, Any] = {"domain": "g", "date": t.strftime("%Y%m%d"), "time": t.strftime("%H%M"),
                                 "type": "fc", "step": str(step) if not v.accumulation_hours
                                 else f"{step - v.accumulation_hours}-{step}",
                                 "levtype": {"isobaricInhPa": "pl", "heightAboveGround": "sfc",
                                             "meanSea": "sfc", "surface": "sfc"}[v.level_type],
                                 "param": v.ecmwf_short_name, "paramId": v.param_id}
        if v.is_upper_air:
            entry["levelist"] = str(channel.level)
        entry["_offset"] = offset
        entry["_length"] = length
        return entry

    def write(self, step: StepData) -> None:
        assert self._pool is not None and self._finisher is not None, "open() first"
        name = self.filename(step.step)
        if name in self._names:
            raise ConfigError(f"GRIB filename template {self.cfg.filename_template!r} gives {name!r} twice")
        self._names.add(name)
        ds = step.dataset
        fields: list[tuple[np.ndarray, Channel]] = []
        for ch in self.run.channels_at(step.step):
            arr = ds[ch.variable.name].values
            if ch.variable.is_upper_air:
                arr = arr[list(self.run.variables.levels).index(int(ch.level or 0))]
            fields.append((arr, ch))
        out = _HashingFile(self.dir / name, self.sha256)
        self._open.append(out)
        index: list[dict[str, Any]] = []
        # map() keeps channel order; encoding runs ahead on the pool while this thread writes.
        for (arr, ch), msg in zip(fields, self._pool.map(lambda f: self._encode(f[0], f[1], step.step), fields)):
            index.append(self._index_entry(ch, step.step, out.size, len(msg)))
            out.write(msg)
        idx = _HashingFile(self.dir / index_name(name))
        self._open.append(idx)
        idx.write("".join(json.dumps(e) + "\n" for e in index).encode())
        self._collect()
        self._pending = self._finisher.submit(self._finish_pair, out, idx)

    def _finish_pair(self, grib: _HashingFile, idx: _HashingFile) -> list[WrittenFile]:
        files = [grib.finish(), idx.finish()]
        self._open.remove(grib)
        self._open.remove(idx)
        return [files[0], WrittenFile(files[1].name, "grib2-index", files[1].size, files[1].sha256)]

    def _collect(self) -> None:
        if self._pending is not None:
            self._files.extend(self._pending.result())
            self._pending = None

    def close(self) -> list[WrittenFile]:
        try:
            self._collect()
        finally:
            self._shutdown()
        return list(self._files)

    def _shutdown(self) -> None:
        for pool in (self._pool, self._finisher):
            if pool is not None:
                pool.shutdown(wait=True)
        self._pool = self._finisher = None

    def abort(self) -> None:
        try:
            if self._pending is not None:
                self._pending.exception()
        finally:
            self._shutdown()
            for f in list(self._open):
                f.discard()
            self._open.clear()
