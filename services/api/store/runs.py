"""Opened runs: store, API variables, point index and cached time axes, kept in a small LRU."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from fuxiops.logs import get_logger
from fuxiops.services.api.errors import ApiError
from fuxiops.services.api.store.catalog import RUN_ID_RE, RunCatalog, RunInfo
from fuxiops.services.api.store.pointindex import PointIndex
from fuxiops.services.api.store.zarrstore import RunStore
from fuxiops.services.api.variables import ApiVariable, api_variables

log = get_logger("fuxiops.services.runs")


class OpenRun:
    """One run opened for reading."""

    def __init__(self, info: RunInfo, cache_dir: Path, channel_cache_size: int = 2) -> None:
        self.info = info
        self.store = RunStore(info.store_path, channel_cache_size=channel_cache_size)
        self.cache_dir = cache_dir
        self.variables: dict[str, ApiVariable] = api_variables(self.store.channels)
        self.channel_index = self.store.channel_index
        self._index: PointIndex | None = None
        self._lock = threading.Lock()
        #: Small per-run memo (time axes per time zone, ...); entries are immutable.
        self.cache: dict[tuple[Any, ...], Any] = {}
        self.valid_times = self.store.valid_times
        self.valid_epoch = self.valid_times.astype("datetime64[s]").astype(np.int64)
        self.valid_iso = [str(t)[:16] + "Z" for t in self.valid_times]
        self.step_hours = [int(s) for s in self.store.steps]
        self.lat = self.store.latitudes
        self.lon = self.store.longitudes
        # Spacing of the regular grid (checked: the nearest-point maths relies on it).
        self.dlat = float(abs(self.lat[1] - self.lat[0])) if self.lat.size > 1 else 1.0
        self.dlon = float(abs(self.lon[1] - self.lon[0])) if self.lon.size > 1 else 1.0
        self.lat_descending = bool(self.lat[0] > self.lat[-1])
        self.model = info.model_name
        attrs_model = self.store.attrs.get("model")
        if self.model == "unknown" and isinstance(attrs_model, str):
            self.model = attrs_model

    @property
    def index_ready(self) -> bool:
        return self._index is not None

    def index(self) -> PointIndex:
        """The point index (built on first use; blocking)."""
        idx = self._index
        if idx is None:
            with self._lock:
                if self._index is None:
                    key = f"{self.info.run_id}-{self.info.fingerprint[:16]}"
                    self._index = PointIndex.open_or_build(self.store, self.cache_dir, key)
                idx = self._index
        return idx

    def nearest(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of the nearest grid cell; longitude is periodic."""
        lat0, lon0 = self.lat[0], self.lon[0]
        if self.lat_descending:
            i = np.rint((lat0 - lat) / self.dlat)
        else:
            i = np.rint((lat - lat0) / self.dlat)
        i = np.clip(i.astype(np.int64), 0, self.lat.size - 1)
        j = np.rint(np.mod(lon - lon0, 360.0) / self.dlon).astype(np.int64) % self.lon.size
        return i, j

    def grid_lon(self, j: np.ndarray) -> np.ndarray:
        """Grid longitudes in [-180, 180)."""
        lon = self.lon[j]
        return np.where(lon >= 180.0, lon - 360.0, lon)


class RunRepository:
    """Resolves run ids (``latest`` included) and keeps recently used runs open."""

    def __init__(self, catalog: RunCatalog, cache_dir: Path, max_open: int = 4, channel_cache_size: int = 2) -> None:
        self.catalog = catalog
        self.cache_dir = cache_dir
        self.max_open = max_open
        self.channel_cache_size = channel_cache_size
        self._open: OrderedDict[tuple[str, str], OpenRun] = OrderedDict()
        self._lock = threading.Lock()

    def info(self, run_id: str | None, data: bool = True) -> RunInfo:
        """A run's catalog entry; ``None`` or ``latest`` means the newest servable run.

        With ``data`` (forecast values, maps, EDR) a run whose status is a failure is refused (409);
        its manifest and files stay reachable through /runs for diagnosis.
        """
        if run_id in (None, "", "latest"):
            info = self.catalog.latest()
            if info is None:
                raise ApiError(404, "no published run is available yet")
            return info
        assert run_id is not None
        if not RUN_ID_RE.match(run_id):
            raise ApiError(400, f"run: must be 'latest' or a run id YYYYMMDDHH, got {run_id!r}", parameter="run")
        info = self.catalog.get(run_id)
        if info is None:
            have = [r.run_id for r in self.catalog.runs()][:20]
            raise ApiError(404, f"run {run_id} not found", parameter="run", allowed=have)
        if data and not info.servable:
            have = [r.run_id for r in self.catalog.runs() if r.servable][:20]
            raise ApiError(409, f"run {run_id} has status {info.status!r} and is not served; its manifest is at "
                                f"/runs/{run_id}", parameter="run", allowed=have)
        return info

    def cached(self, run_id: str | None) -> OpenRun | None:
        """The run if it is already open (no I/O beyond the catalog's stat), else None."""
        info = self.info(run_id)
        return self._open.get((info.run_id, info.fingerprint))

    def open(self, run_id: str | None) -> OpenRun:
        info = self.info(run_id)
        key = (info.run_id, info.fingerprint)
        run = self._open.get(key)
        if run is not None:
            return run
        with self._lock:
            run = self._open.get(key)
            if run is None:
                try:
                    run = OpenRun(info, self.cache_dir, self.channel_cache_size)
                except ApiError:
                    raise
                except Exception as e:
                    log.error("cannot open run %s: %s", info.run_id, e)
                    raise ApiError(503, f"run {info.run_id} cannot be read (its serving store is missing or "
                                        "damaged)") from None
                self._open[key] = run
                while len(self._open) > self.max_open:
                    self._open.popitem(last=False)
            else:
                self._open.move_to_end(key)
        return run

    def prune_cache(self) -> int:
        """Delete point indexes of runs that are gone or were republished; returns how many."""
        keep = {f"{r.run_id}-{r.fingerprint[:16]}" for r in self.catalog.runs()}
        removed = 0
        for p in self.cache_dir.glob("*.points.npy"):
            if p.name.split(".", 1)[0] not in keep:
                p.unlink(missing_ok=True)
                removed += 1
        return removed

    def forget(self, run_id: str) -> None:
        """Drop a run from the open set (after deletion), and its point indexes."""
        with self._lock:
            for key in [k for k in self._open if k[0] == run_id]:
                del self._open[key]
        for p in self.cache_dir.glob(f"{run_id}-*.points.npy"):
            p.unlink(missing_ok=True)
