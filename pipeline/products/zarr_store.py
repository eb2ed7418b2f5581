"""Zarr serving store ``forecast.zarr``: the layout the API reads (docs/architecture.md).

Chunks hold all lead times of one level over a small lat/lon tile, so a point
query over the whole forecast touches one chunk per variable and level. Steps
arrive one at a time, which is the transpose of that layout; rewriting every
chunk at every step would cost O(steps^2) I/O, and holding the run in memory
would cost 12 GB at 0.25 degree. So each step is spooled to uncompressed
files on disk (one sequential write per variable and step; the page cache does
the rest), and ``close`` rechunks channel by channel, compressing on a thread
pool and writing Zarr v2 chunk files directly.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from fuxiops.errors import DataError
from fuxiops.state import LAT, LEVEL, LON, coord_attrs, variable_attrs

from .base import ProductWriter, RunMeta, StepData, WrittenFile

STORE_NAME = "forecast.zarr"


class ZarrWriter(ProductWriter):
    """Writes ``forecast.zarr`` (Zarr format 2, consolidated metadata, Blosc + byte shuffle).

    ``tile``: lat/lon size of a chunk (90: at 0.25 degree a 41-step chunk is 1.3 MB raw, 10k files
    per run; smaller tiles make point reads cheaper but multiply the files to create);
    ``cname``/``clevel``: Blosc compressor (lz4 by default: it compresses and decompresses
    several times faster than zstd, which matters for point queries).
    """

    format = "zarr"

    def __init__(self, tile: int = 90, cname: str = "lz4", clevel: int = 5, workers: int = 2) -> None:
        if tile < 1:
            raise DataError(f"zarr tile size must be >= 1, got {tile}")
        if cname not in ("lz4", "lz4hc", "zstd", "zlib", "blosclz"):
            raise DataError(f"unknown Blosc compressor {cname!r}; allowed: lz4, lz4hc, zstd, zlib, blosclz")
        self.tile = tile
        self.cname = cname
        self.clevel = clevel
        self.workers = workers
        self._fd: dict[str, int] = {}

    def open(self, run: RunMeta, directory: Path) -> None:
        self.run = run
        self.dir = directory
        self.spool = directory / ".zarr-spool"
        self.spool.mkdir()
        n = len(run.steps)
        self._seen: list[int] = []
        self._shape: dict[str, tuple[int, ...]] = {}
        # A spool file per variable, uncompressed: (steps, [levels,] lat, lon) float32, written
        # with pwrite and read back with preadv (no memory map: RSS stays bounded by one step).
        for name in self._variables():
            shape = (n, len(run.variables.levels), *run.grid.shape) if self._upper(name) else (n, *run.grid.shape)
            fd = os.open(self.spool / f"{name}.f32", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            self._fd[name] = fd
            self._shape[name] = shape
            size = int(np.prod(shape)) * 4
            # Reserve the blocks now, so that a full disk fails here and not halfway through.
            if hasattr(os, "posix_fallocate") and size:
                os.posix_fallocate(fd, 0, size)
            else:
                os.ftruncate(fd, size)
        for ch in run.variables.diagnostic_channels:
            if 0 in run.steps:  # accumulations do not exist at step 0
                name = ch.variable.name
                self._put(name, run.steps.index(0), np.full(self._shape[name][1:], np.nan, dtype=np.float32))

    def _step_bytes(self, name: str) -> int:
        return int(np.prod(self._shape[name][1:])) * 4

    def _put(self, name: str, index: int, values: np.ndarray) -> None:
        data = np.ascontiguousarray(values, dtype="<f4").data.cast("B")
        offset = index * self._step_bytes(name)
        while data:
            n = os.pwrite(self._fd[name], data, offset)
            data, offset = data[n:], offset + n

    def _get(self, name: str, level: int | None) -> np.ndarray:
        """All steps of one channel, (steps, lat, lon)."""
        n_steps, *rest = self._shape[name]
        n_lat, n_lon = rest[-2:]
        out = np.empty((n_steps, n_lat, n_lon), dtype="<f4")
        field = n_lat * n_lon * 4
        for s in range(n_steps):
            buf = out[s].data.cast("B")
            offset = s * self._step_bytes(name) + (level or 0) * field
            while buf:
                got = os.preadv(self._fd[name], [buf], offset)
                if got == 0:
                    raise DataError(f"Zarr spool of {name} is truncated")
                buf, offset = buf[got:], offset + got
        return out

    def _variables(self) -> list[str]:
        vs = self.run.variables
        return list(vs.upper_air) + list(vs.surface) + list(vs.diagnostics)

    def _upper(self, name: str) -> bool:
        return name in self.run.variables.upper_air

    def write(self, step: StepData) -> None:
        if step.step not in self.run.steps:
            raise DataError(f"step {step.step} h is not a lead time of run {self.run.run_id} ({list(self.run.steps)})")
        i = self.run.steps.index(step.step)
        for name in step.dataset.data_vars:
            self._put(str(name), i, step.dataset[name].values)
        self._seen.append(step.step)

    def _coords_dataset(self) -> xr.Dataset:
        run = self.run
        steps = np.asarray(run.steps, dtype=np.int64)
        ref = np.datetime64(pd.Timestamp(run.reference_time).to_datetime64(), "ns")
        valid = ref + steps.astype("timedelta64[h]").astype("timedelta64[ns]")
        ca = coord_attrs()
        coords: dict[str, Any] = {
            "step": ("step", steps, {"long_name": "lead time", "standard_name": "forecast_period",
                                     "units": "hours"}),
            "valid_time": ("step", valid, {"long_name": "valid time", "standard_name": "time"}),
            "time": ((), ref, {"long_name": "reference time", "standard_name": "forecast_reference_time"}),
            LAT: (LAT, run.grid.latitudes, ca[LAT]),
            LON: (LON, run.grid.longitudes, ca[LON]),
        }
        if run.variables.upper_air:
            coords[LEVEL] = (LEVEL, np.asarray(run.variables.levels, dtype=np.int64), ca[LEVEL])
        attrs = {"run_id": run.run_id, "reference_time": run.reference_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "model": json.dumps(dict(run.model), sort_keys=True), "status": run.status,
                 "grid": run.grid.name, "deployment": run.deployment, "Conventions": "CF-1.10"}
        return xr.Dataset(coords=coords, attrs=attrs)

    def close(self) -> list[WrittenFile]:
        import zarr
        from numcodecs import Blosc

        missing = [s for s in self.run.steps if s not in self._seen]
        if missing:
            raise DataError(f"forecast of run {self.run.run_id} ended without lead time(s) {missing} h")
        path = self.dir / STORE_NAME
        hours = f"hours since {self.run.reference_time:%Y-%m-%d %H:%M:%S}"
        self._coords_dataset().to_zarr(path, mode="w-", consolidated=False, zarr_format=2, encoding={
            "valid_time": {"units": hours, "dtype": "int64"}, "time": {"units": hours, "dtype": "int64"}})
        n_steps = len(self.run.steps)
        lat_t, lon_t = min(self.tile, self.run.grid.n_lat), min(self.tile, self.run.grid.n_lon)
        codec = Blosc(cname=self.cname, clevel=self.clevel, shuffle=Blosc.SHUFFLE)
        group = zarr.open_group(str(path), mode="r+", zarr_format=2)
        jobs: list[tuple[str, int | None]] = []
        for name in self._variables():
            upper = self._upper(name)
            shape = self._shape[name]
            chunks = (n_steps, 1, lat_t, lon_t) if upper else (n_steps, lat_t, lon_t)
            dims = ["step", LEVEL, LAT, LON] if upper else ["step", LAT, LON]
            group.create_array(name, shape=shape, chunks=chunks, dtype="<f4", compressors=codec, filters=None,
                               fill_value=np.float32(np.nan), order="C",
                               attributes={**variable_attrs(name), "_ARRAY_DIMENSIONS": dims})
            jobs += [(name, li) for li in range(len(self.run.variables.levels))] if upper else [(name, None)]

        def fill(job: tuple[str, int | None]) -> None:
            # One channel: read its (steps, lat, lon) slab from the spool once, cut it into
            # all-steps tiles and write each as a Zarr v2 chunk file (edge chunks padded, as v2 stores them).
            name, li = job
            slab = self._get(name, li)
            prefix = f"0.{li}." if li is not None else "0."
            tile = np.empty((n_steps, lat_t, lon_t), dtype="<f4")
            for ti, i0 in enumerate(range(0, slab.shape[1], lat_t)):
                for tj, j0 in enumerate(range(0, slab.shape[2], lon_t)):
                    part = slab[:, i0:i0 + lat_t, j0:j0 + lon_t]
                    if part.shape[1:] != (lat_t, lon_t):
                        tile[...] = np.nan
                    tile[:, : part.shape[1], : part.shape[2]] = part
                    with open(path / name / f"{prefix}{ti}.{tj}", "wb") as fh:
                        fh.write(codec.encode(tile))

        with ThreadPoolExecutor(self.workers, thread_name_prefix="zarr-chunk") as pool:
            list(pool.map(fill, jobs))
        zarr.consolidate_metadata(str(path))
        self._drop_spool()
        return [WrittenFile(STORE_NAME, "zarr")]

    def _drop_spool(self) -> None:
        for fd in self._fd.values():
            os.close(fd)
        self._fd.clear()
        if getattr(self, "spool", None) is not None:
            shutil.rmtree(self.spool, ignore_errors=True)

    def abort(self) -> None:
        self._drop_spool()
