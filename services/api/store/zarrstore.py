"""The Zarr serving store of one run (``forecast.zarr``), read without xarray on the data path.

xarray decodes the coordinates and CF encodings once, when the store is
opened; fields are then read straight from the Zarr arrays, so that a map or
a point-index build never goes through xarray's indexing machinery.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from fuxiops.catalog import VARIABLES, Channel
from fuxiops.errors import DataError


@dataclass(frozen=True)
class _Decode:
    """CF packing of one data variable (applied to raw Zarr values)."""

    scale: float | None
    offset: float | None
    fill: float | None

    def apply(self, raw: np.ndarray) -> np.ndarray:
        out = raw.astype(np.float32, copy=False)
        if self.fill is not None and np.isfinite(self.fill):
            out = np.where(raw == self.fill, np.float32(np.nan), out)
        if self.scale is not None:
            out = out * np.float32(self.scale)
        if self.offset is not None:
            out = out + np.float32(self.offset)
        return out.astype(np.float32, copy=False)


class RunStore:
    """Coordinates, channels and field reads of one run's ``forecast.zarr``."""

    def __init__(self, path: str | Path, channel_cache_size: int = 2) -> None:
        import xarray as xr  # import here: opening is rare, the hot path never touches xarray
        import zarr

        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"run store {self.path.name} is missing")
        ds = xr.open_zarr(self.path, consolidated=None, chunks=None, decode_timedelta=True)
        try:
            self.attrs: dict[str, Any] = dict(ds.attrs)
            for c in ("step", "latitude", "longitude"):
                if c not in ds.coords and c not in ds.variables:
                    raise DataError(f"run store lacks the {c!r} coordinate")
            step = ds["step"].values
            if np.issubdtype(step.dtype, np.timedelta64):
                step = step / np.timedelta64(1, "h")
            self.steps = np.asarray(step, dtype=np.float64).round().astype(np.int64)
            self.latitudes = np.asarray(ds["latitude"].values, dtype=np.float64)
            self.longitudes = np.asarray(ds["longitude"].values, dtype=np.float64)
            self.levels = (np.asarray(ds["level"].values).astype(np.int64) if "level" in ds.coords
                           else np.zeros(0, dtype=np.int64))
            self.reference_time = self._reference_time(ds)
            if "valid_time" in ds.coords or "valid_time" in ds.variables:
                vt = np.asarray(ds["valid_time"].values).astype("datetime64[s]").reshape(-1)
            else:
                vt = np.datetime64(self.reference_time, "s") + self.steps.astype("timedelta64[h]")
            self.valid_times: np.ndarray = vt.astype("datetime64[s]")
            self.channels: list[Channel] = []
            self._decode: dict[str, _Decode] = {}
            self._dims: dict[str, tuple[str, ...]] = {}
            for name, da in ds.data_vars.items():
                var = VARIABLES.get(str(name))
                if var is None or "step" not in da.dims or da.dims[-2:] != ("latitude", "longitude"):
                    continue  # statics, auxiliary variables: not served as forecast fields
                self._dims[str(name)] = tuple(str(d) for d in da.dims)
                enc = da.encoding
                fill = enc.get("_FillValue", enc.get("missing_value"))
                self._decode[str(name)] = _Decode(
                    scale=float(enc["scale_factor"]) if "scale_factor" in enc else None,
                    offset=float(enc["add_offset"]) if "add_offset" in enc else None,
                    fill=float(fill) if fill is not None else None)
                if var.is_upper_air:
                    if "level" not in da.dims:
                        continue
                    self.channels += [Channel(var, int(lev)) for lev in self.levels]
                else:
                    self.channels.append(Channel(var))
        finally:
            ds.close()
        if not self.channels:
            raise DataError(f"run store {self.path.name} holds no catalog variable on (step, latitude, longitude)")
        self._group = zarr.open_group(str(self.path), mode="r")
        self.channel_index: dict[str, int] = {c.name: k for k, c in enumerate(self.channels)}
        self._level_pos = {int(lev): k for k, lev in enumerate(self.levels)}
        self.time_series_chunks, self.rows_per_chunk = self.chunking()
        # With all lead times in each chunk, one map decodes the whole channel: keep the last few decoded
        # channels so that stepping through lead times (the page's main use) costs nothing more.
        self._channel_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._channel_cache_size = channel_cache_size
        self._cache_lock = threading.Lock()

    @staticmethod
    def _reference_time(ds: Any) -> datetime:
        rt = ds.attrs.get("reference_time")
        if isinstance(rt, str):
            try:
                t = datetime.fromisoformat(rt.replace("Z", "+00:00"))
                if t.tzinfo is not None:
                    t = t.astimezone(timezone.utc).replace(tzinfo=None)
                return t
            except ValueError:
                pass
        if "time" in ds.variables:
            v = np.asarray(ds["time"].values).reshape(-1)[0]
            return datetime.fromisoformat(str(np.datetime64(v, "s")))
        run_id = ds.attrs.get("run_id")
        if isinstance(run_id, str):
            return datetime.strptime(run_id, "%Y%m%d%H")
        raise DataError("run store has neither a reference_time attribute nor a 'time' coordinate")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.latitudes.size, self.longitudes.size)

    @property
    def variables(self) -> list[str]:
        return list(self._dims)

    def read_step(self, name: str, step_index: int) -> np.ndarray:
        """One variable at one lead time: (lat, lon) or (level, lat, lon), float32 SI units, NaN for missing."""
        arr = self._group[name]
        dims = self._dims[name]
        key: list[Any] = []
        for d in dims:
            key.append(step_index if d == "step" else slice(None))
        raw = np.asarray(arr[tuple(key)])
        # Put level (if any) first, whatever the stored dim order besides step.
        rest = [d for d in dims if d != "step"]
        if "level" in rest and rest.index("level") != 0:
            raw = np.moveaxis(raw, rest.index("level"), 0)
        return self._decode[name].apply(raw)

    def read_rows(self, name: str, rows: slice) -> np.ndarray:
        """All lead times of one variable over a band of rows: (step, [level,] rows, lon) float32."""
        arr = self._group[name]
        dims = self._dims[name]
        key = tuple(rows if d == "latitude" else slice(None) for d in dims)
        raw = np.asarray(arr[key])
        order = [dims.index(d) for d in ("step", "level", "latitude", "longitude") if d in dims]
        return self._decode[name].apply(np.transpose(raw, order))

    def chunking(self) -> tuple[bool, int]:
        """(whether chunks hold all lead times, rows per chunk): how to read the store cheaply."""
        all_steps = True
        rows = self.latitudes.size
        for name, dims in self._dims.items():
            chunks = self._group[name].chunks
            all_steps &= chunks[dims.index("step")] >= self.steps.size
            rows = min(rows, chunks[dims.index("latitude")])
        return all_steps, max(1, rows)

    def _channel_all_steps(self, channel: Channel) -> np.ndarray:
        """(step, lat, lon) of one channel, decoded once and kept in a small LRU."""
        key = channel.name
        with self._cache_lock:
            hit = self._channel_cache.get(key)
            if hit is not None:
                self._channel_cache.move_to_end(key)
                return hit
        block = self.read_rows(channel.variable.name, slice(None))
        if block.ndim == 4:
            block = np.ascontiguousarray(block[:, self._level_pos[int(channel.level)]])  # type: ignore[arg-type]
        with self._cache_lock:
            self._channel_cache[key] = block
            while len(self._channel_cache) > self._channel_cache_size:
                self._channel_cache.popitem(last=False)
        return block

    def read_field(self, channel: Channel, step_index: int) -> np.ndarray:
        """One channel at one lead time as (lat, lon) float32."""
        name = channel.variable.name
        if name not in self._dims:
            raise DataError(f"variable {name!r} is not in this run")
        if channel.variable.is_upper_air and channel.level not in self._level_pos:
            raise DataError(f"level {channel.level} hPa is not in this run")
        if self.time_series_chunks and self._channel_cache_size > 0:
            return self._channel_all_steps(channel)[step_index]
        arr = self._group[name]
        dims = self._dims[name]
        key: list[Any] = []
        for d in dims:
            if d == "step":
                key.append(step_index)
            elif d == "level":
                if channel.level not in self._level_pos:
                    raise DataError(f"level {channel.level} hPa is not in this run")
                key.append(self._level_pos[int(channel.level)])  # type: ignore[arg-type]
            else:
                key.append(slice(None))
        return self._decode[name].apply(np.asarray(arr[tuple(key)]))
