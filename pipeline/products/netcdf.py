"""CF-1.10 NetCDF-4 product writer: one file per run (streamed step by step) or one per lead time.

Coordinates follow CF's canonical forecast layout, which CDO and other CF
tools understand: ``time`` is the valid time axis, ``step(time)`` the lead
time (forecast_period, hours) and scalar ``reference_time`` the
forecast_reference_time; latitude and longitude carry cell bounds. Data are
float32, zlib + shuffle, chunked one field (split in about 1 MB tiles) per
chunk, which suits map readers and keeps step-wise writing streaming. Missing values (NaN) become ``_FillValue``.

netCDF4 defines the file (dimensions, attributes, the shuffle + deflate filter
pipeline); field chunks are then compressed on a thread pool and written with
HDF5's direct chunk write through h5py, because HDF5 itself compresses on one
thread. Without h5py the same file is written through netCDF4 alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import importlib.util
import json
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from fuxiops import __version__
from fuxiops.catalog import get_variable
from fuxiops.config import NetcdfConfig
from fuxiops.errors import DataError
from fuxiops.state import LAT, LEVEL, LON

from .base import ProductWriter, RunMeta, StepData, WrittenFile

FILL = np.float32(9.96921e36)  # the netCDF default float fill value


def _bounds(centres: np.ndarray, clip: tuple[float, float] | None) -> np.ndarray:
    d = np.diff(centres)
    edges = np.concatenate([[centres[0] - d[0] / 2], (centres[:-1] + centres[1:]) / 2, [centres[-1] + d[-1] / 2]])
    if clip is not None:
        edges = np.clip(edges, *clip)
    return np.stack([edges[:-1], edges[1:]], axis=1)


class NetcdfWriter(ProductWriter):
    """NetCDF-4 (HDF5) files with CF-1.10 metadata."""

    format = "netcdf"

    def __init__(self, config: NetcdfConfig | None = None, max_chunk_points: int = 361 * 720, workers: int = 2,
                 **overrides: Any) -> None:
        cfg = config or NetcdfConfig()
        if overrides:
            cfg = cfg.model_copy(update=overrides)
        self.cfg = cfg
        self.max_chunk_points = max_chunk_points
        self._files: list[WrittenFile] = []
        self.workers = workers
        self._sink: _Sink | None = None

    def open(self, run: RunMeta, directory: Path) -> None:
        self.run = run
        self.dir = directory
        self._seen: list[int] = []
        if self.cfg.layout == "per_run":
            # Define the whole file now and close it: data go in through a sink per step.
            self._create(f"{run.run_id}.nc", list(run.steps)).close()

    def _chunks(self) -> tuple[int, int]:
        n_lat, n_lon = self.run.grid.shape
        lat_c, lon_c = n_lat, n_lon
        while lat_c * lon_c > self.max_chunk_points:
            if lat_c >= lon_c / 2:
                lat_c = (lat_c + 1) // 2
            else:
                lon_c = (lon_c + 1) // 2
        return lat_c, lon_c

    def _create(self, name: str, steps: list[int]) -> Any:
        import netCDF4

        nc = netCDF4.Dataset(self.dir / name, "w", format="NETCDF4")
        try:
            self._define(nc, steps)
        except BaseException:
            for _ in range(3):  # a full disk can make close() fail once; the handle must go
                try:
                    nc.close()
                    break
                except Exception:  # noqa: BLE001
                    continue
            raise
        return nc

    def _define(self, nc: Any, steps: list[int]) -> None:
        run = self.run
        nc.set_fill_off()  # every value is written; avoids writing each chunk twice
        ref = run.reference_time
        hours = f"hours since {ref:%Y-%m-%d %H:%M:%S}"
        # CF's canonical forecast layout: valid time is the time axis, lead time and reference time
        # are auxiliary coordinates (CDO, ncview and Panoply expect this).
        nc.createDimension("time", len(steps))
        nc.createDimension(LAT, run.grid.n_lat)
        nc.createDimension(LON, run.grid.n_lon)
        nc.createDimension("bnds", 2)
        v = nc.createVariable("time", "f8", ("time",))
        v.setncatts({"long_name": "valid time", "standard_name": "time", "units": hours,
                     "calendar": "proleptic_gregorian", "axis": "T"})
        v[:] = np.asarray(steps, dtype=np.float64)
        v = nc.createVariable("step", "i4", ("time",))
        v.setncatts({"long_name": "lead time", "standard_name": "forecast_period", "units": "hours"})
        v[:] = steps
        v = nc.createVariable("reference_time", "f8", ())
        v.setncatts({"long_name": "forecast reference time", "standard_name": "forecast_reference_time",
                     "units": hours, "calendar": "proleptic_gregorian"})
        v.assignValue(0.0)
        lat = run.grid.latitudes
        lon = run.grid.longitudes
        v = nc.createVariable(LAT, "f8", (LAT,))
        v.setncatts({"long_name": "latitude", "standard_name": "latitude", "units": "degrees_north", "axis": "Y",
                     "bounds": "latitude_bnds"})
        v[:] = lat
        nc.createVariable("latitude_bnds", "f8", (LAT, "bnds"))[:] = _bounds(lat, (-90.0, 90.0))
        v = nc.createVariable(LON, "f8", (LON,))
        v.setncatts({"long_name": "longitude", "standard_name": "longitude", "units": "degrees_east", "axis": "X",
                     "bounds": "longitude_bnds"})
        v[:] = lon
        nc.createVariable("longitude_bnds", "f8", (LON, "bnds"))[:] = _bounds(lon, None)
        if run.variables.upper_air:
            nc.createDimension(LEVEL, len(run.variables.levels))
            v = nc.createVariable(LEVEL, "i4", (LEVEL,))
            v.setncatts({"long_name": "pressure level", "standard_name": "air_pressure", "units": "hPa",
                         "positive": "down", "axis": "Z"})
            v[:] = list(run.variables.levels)
        lat_c, lon_c = self._chunks()
        names = list(run.variables.upper_air) + list(run.variables.surface)
        if any(s > 0 for s in steps):
            names += list(run.variables.diagnostics)
        for name in names:
            var = get_variable(name)
            dims = ("time", LEVEL, LAT, LON) if var.is_upper_air else ("time", LAT, LON)
            chunks = (1, 1, lat_c, lon_c) if var.is_upper_air else (1, lat_c, lon_c)
            v = nc.createVariable(name, "f4", dims, zlib=self.cfg.complevel > 0, complevel=self.cfg.complevel or None,
                                  shuffle=True, chunksizes=chunks, fill_value=FILL)
            atts: dict[str, Any] = {"long_name": var.long_name, "standard_name": var.standard_name,
                                    "units": var.units, "coordinates": "reference_time step",
                                    "GRIB_paramId": np.int32(var.param_id), "GRIB_shortName": var.ecmwf_short_name}
            if var.accumulation_hours:
                # Accumulated over the N hours ending at the valid time (absent at step 0).
                atts["cell_methods"] = f"time: sum (interval: {var.accumulation_hours} hours)"
                atts["comment"] = (f"accumulation over the {var.accumulation_hours} hours ending at the valid time; "
                                   "missing at step 0")
            if var.level_type == "heightAboveGround":
                atts["comment"] = f"at {var.level} m above ground"
            v.setncatts(atts)
        nc.setncatts({
            "Conventions": "CF-1.10",
            "title": f"fuxiops forecast {run.run_id}",
            "institution": f"fuxiops deployment {run.deployment}",
            "source": f"fuxiops {__version__}; model {json.dumps(dict(run.model), sort_keys=True)}",
            # No wall-clock stamp: a re-run of a cycle must give byte-identical files (the manifest
            # records when the run was published).
            "history": f"written by fuxiops {__version__} publish",
            "references": "FuXiWeather2 (arXiv 2603.15358)",
            "run_id": run.run_id,
            "reference_time": f"{ref:%Y-%m-%dT%H:%M:%SZ}",
            "status": run.status,
            "grid": run.grid.name,
        })

    def write(self, step: StepData) -> None:
        if step.step not in self.run.steps:
            raise DataError(f"step {step.step} h is not a lead time of run {self.run.run_id} ({list(self.run.steps)})")
        if self.cfg.layout == "per_run":
            name, i = f"{self.run.run_id}.nc", self.run.steps.index(step.step)
            if self._sink is None:
                self._sink = self._open_sink(name)
        else:
            name, i = f"{self.run.run_id}-{step.step}h.nc", 0
            self._create(name, [step.step]).close()
            self._sink = self._open_sink(name)
        fields: list[tuple[str, tuple[int, ...], np.ndarray | None]] = []
        for var in step.dataset.data_vars:
            values = step.dataset[var].values
            if values.ndim == 3:
                fields += [(str(var), (i, k), values[k]) for k in range(values.shape[0])]
            else:
                fields.append((str(var), (i,), values))
        if self.cfg.layout == "per_run" and step.step == 0:
            # Accumulations do not exist at step 0: write fill values (fill mode is off).
            fields += [(n, (i,), None) for n in self.run.variables.diagnostics]
        self._sink.write(fields)
        if self.cfg.layout == "per_step":
            self._finish(name)
        self._seen.append(step.step)

    def _open_sink(self, name: str) -> "_Sink":
        if importlib.util.find_spec("h5py") is None:
            import netCDF4

            return _NetCDF4Sink(netCDF4.Dataset(self.dir / name, "a"))
        return _DirectChunkSink(self.dir / name, self._chunks(), self.cfg.complevel, self.workers)

    def _finish(self, name: str) -> None:
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.close()
        fd = os.open(self.dir / name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._files.append(WrittenFile(name, "netcdf", (self.dir / name).stat().st_size))

    def close(self) -> list[WrittenFile]:
        missing = [s for s in self.run.steps if s not in self._seen]
        if missing:
            raise DataError(f"forecast of run {self.run.run_id} ended without lead time(s) {missing} h")
        if self.cfg.layout == "per_run":
            self._finish(f"{self.run.run_id}.nc")
        return list(self._files)

    def abort(self) -> None:
        if self._sink is not None:
            self._sink.abort()
        self._sink = None


class _Sink(ABC):
    """Where field values go once the file's metadata exists."""

    @abstractmethod
    def write(self, fields: list[tuple[str, tuple[int, ...], np.ndarray | None]]) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def abort(self) -> None:
        """Close after a failure. A flush can fail again on a full disk; the handle must
        still be released, or the deleted file would keep its space until the process exits."""
        for _ in range(3):
            try:
                self.close()
                return
            except Exception:  # noqa: BLE001 - already failing; the directory is removed next
                continue


class _NetCDF4Sink(_Sink):
    """Plain netCDF4 writes (HDF5 compresses serially); used when h5py is not installed."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc

    def write(self, fields: list[tuple[str, tuple[int, ...], np.ndarray | None]]) -> None:
        for name, index, values in fields:
            v = self.nc.variables[name]
            if values is None:
                values = np.ma.masked_all(v.shape[len(index):], dtype=np.float32)
            elif np.isnan(values.min()):
                values = np.ma.masked_invalid(values)
            v[index] = values

    def close(self) -> None:
        self.nc.close()


class _DirectChunkSink(_Sink):
    """Shuffle + deflate each chunk on a thread pool (zlib releases the GIL) and hand the
    compressed chunks to HDF5 with H5Dwrite_chunk: the file and its filter pipeline are
    exactly those netCDF4 defined, only the compression runs in parallel."""

    def __init__(self, path: Path, chunks: tuple[int, int], complevel: int, workers: int) -> None:
        import h5py

        self.f = h5py.File(path, "r+")
        self.lat_c, self.lon_c = chunks
        self.level = complevel
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="netcdf-deflate")
        self._fill_chunk: bytes | None = None

    def _compress(self, tile: np.ndarray | None) -> bytes:
        if tile is None:
            if self._fill_chunk is None:
                self._fill_chunk = self._encode(np.full((self.lat_c, self.lon_c), FILL, dtype=np.float32))
            return self._fill_chunk
        return self._encode(tile)

    def _encode(self, tile: np.ndarray) -> bytes:
        if tile.shape != (self.lat_c, self.lon_c) or np.isnan(tile.min()):
            full = np.full((self.lat_c, self.lon_c), FILL, dtype=np.float32)
            full[: tile.shape[0], : tile.shape[1]] = np.where(np.isnan(tile), FILL, tile)
            tile = full
        # HDF5's shuffle filter: all first bytes of the 4-byte values, then all second bytes, ...
        shuffled = np.ascontiguousarray(tile, dtype="<f4").view(np.uint8).reshape(-1, 4).T.tobytes()
        return zlib.compress(shuffled, self.level) if self.level > 0 else shuffled

    def write(self, fields: list[tuple[str, tuple[int, ...], np.ndarray | None]]) -> None:
        jobs: list[tuple[str, tuple[int, ...], np.ndarray | None]] = []
        for name, index, values in fields:
            n_lat, n_lon = self.f[name].shape[-2:]
            for i0 in range(0, n_lat, self.lat_c):
                for j0 in range(0, n_lon, self.lon_c):
                    tile = None if values is None else values[i0:i0 + self.lat_c, j0:j0 + self.lon_c]
                    jobs.append((name, (*index, i0, j0), tile))
        mask = 0 if self.level > 0 else 0b10  # filter_mask bit set = that filter (deflate) skipped
        for (name, offset, _), data in zip(jobs, self.pool.map(lambda j: self._compress(j[2]), jobs)):
            self.f[name].id.write_direct_chunk(offset, data, filter_mask=mask)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.f.close()
