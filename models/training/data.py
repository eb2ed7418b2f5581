"""Streaming training data over Zarr stores: states, the NWP background pool, gridded observations.

Stores are opened lazily (xarray + Zarr) and read one time at a time through
small caches, so a multi-year archive never has to fit in memory. Variable
names of WeatherBench 2 / ARCO-ERA5 stores (``2m_temperature``,
``geopotential``, ``lat``/``lon`` with ascending latitude...) are mapped onto
the catalog's short names and the 90 -> -90 latitude convention.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

from fuxiops.catalog import Channel, VariableSet
from fuxiops.errors import DataError
from fuxiops.grids import Grid
from fuxiops.state import LAT, LEVEL, LON, check_dataset, to_channels

#: WeatherBench 2 / ARCO-ERA5 variable names -> catalog short names.
WB2_NAMES: dict[str, str] = {
    "geopotential": "z", "temperature": "t", "u_component_of_wind": "u", "v_component_of_wind": "v",
    "relative_humidity": "r", "2m_temperature": "t2m", "10m_u_component_of_wind": "u10",
    "10m_v_component_of_wind": "v10", "mean_sea_level_pressure": "msl", "total_precipitation_6hr": "tp6",
}
#: Dimension names used by other archives -> ours.
DIM_NAMES: dict[str, str] = {"lat": LAT, "lon": LON, "pressure_level": LEVEL, "isobaricInhPa": LEVEL,
                             "valid_time": "time"}


def normalise_layout(ds: xr.Dataset) -> xr.Dataset:
    """Rename WB2/ARCO variables and dims to the fuxiops convention; latitude 90 -> -90; lon 0 -> 360."""
    ds = ds.rename({k: v for k, v in WB2_NAMES.items() if k in ds.data_vars})
    ds = ds.rename({k: v for k, v in DIM_NAMES.items() if k in ds.dims or k in ds.coords
                    if not (k == "valid_time" and "time" in ds.dims)})
    if LAT in ds.coords and ds[LAT].size > 1 and ds[LAT].values[0] < ds[LAT].values[-1]:
        ds = ds.isel({LAT: slice(None, None, -1)})
    if LON in ds.coords and float(ds[LON].min()) < 0:
        ds = ds.assign_coords({LON: ds[LON] % 360}).sortby(LON)
    if LEVEL in ds.coords:
        ds = ds.assign_coords({LEVEL: ds[LEVEL].astype(np.int64)})
    return ds


def open_state_store(path: str | Path, variables: VariableSet, grid: Grid, what: str = "state store"
                     ) -> xr.Dataset:
    """Open a state archive (ours or WB2/ARCO layout), checked against variables and grid."""
    p = str(path)
    try:
        ds = xr.open_zarr(p, consolidated=None, chunks=None) if not p.endswith(".nc") else xr.open_dataset(p)
    except (FileNotFoundError, OSError, ValueError) as e:
        raise DataError(f"cannot open {what} {p}: {e}") from None
    ds = normalise_layout(ds)
    check_dataset(ds, variables, grid, f"{what} {p}")
    if "time" not in ds.dims:
        raise DataError(f"{what} {p} has no time dimension")
    keep = list(variables.upper_air) + list(variables.surface)
    ds = ds[keep]
    if variables.upper_air:
        ds = ds.sel({LEVEL: list(variables.levels)})
    return ds


class StateSeries:
    """Channel arrays ``(C, lat, lon)`` of a state archive by time, with a small LRU cache."""

    def __init__(self, ds: xr.Dataset, channels: Sequence[Channel], cache_size: int = 64) -> None:
        self.ds = ds
        self.channels = list(channels)
        self.times = ds["time"].values.astype("datetime64[ns]")
        self._index = {t: i for i, t in enumerate(self.times)}
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.cache_size = cache_size

    def has(self, t: np.datetime64) -> bool:
        return np.datetime64(t, "ns") in self._index

    def index(self, t: np.datetime64) -> int:
        try:
            return self._index[np.datetime64(t, "ns")]
        except KeyError:
            raise DataError(f"time {t} is not in the archive ({self.times[0]} .. {self.times[-1]})") from None

    def at(self, t: np.datetime64) -> np.ndarray:
        i = self.index(t)
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        arr = to_channels(self.ds.isel(time=i), self.channels)
        self._cache[i] = arr
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return arr

    def stack(self, times: Sequence[np.datetime64]) -> np.ndarray:
        return np.stack([self.at(t) for t in times])


class BackgroundPool:
    """Offline NWP forecasts (dims time = initialisation, step in hours) as backgrounds valid at a time."""

    def __init__(self, ds: xr.Dataset, channels: Sequence[Channel], min_lead: int = 6, max_lead: int = 180) -> None:
        if "step" not in ds.dims:
            raise DataError("the NWP pool store needs a 'step' dimension (lead time in hours)")
        step = ds["step"].values
        if np.issubdtype(step.dtype, np.timedelta64):
            ds = ds.assign_coords(step=(step / np.timedelta64(1, "h")).astype(np.int64))
        self.ds = ds
        self.channels = list(channels)
        self.inits = ds["time"].values.astype("datetime64[ns]")
        self.steps = [int(s) for s in ds["step"].values if min_lead <= int(s) <= max_lead]
        self._init_index = {t: i for i, t in enumerate(self.inits)}
        self._step_index = {int(s): i for i, s in enumerate(ds["step"].values)}
        #: Mean error per lead (hours) subtracted from every forecast read (see ``estimate_bias``).
        self.bias: dict[int, np.ndarray] = {}

    def estimate_bias(self, reference: "StateSeries", start: np.datetime64, end: np.datetime64,
                      max_inits: int = 48, progress: bool = False) -> dict[int, np.ndarray]:
        """Mean (forecast - reference) per lead and grid point over up to ``max_inits`` evenly spaced
        initialisations whose forecasts verify inside ``start .. end``.

        The testbed's NWP differs from the reanalysis systematically (its 2 m temperature is ~2.5 K
        warmer even at lead 0). An assimilator trained on those backgrounds learns that offset as a
        fixed increment and then applies it to the forecaster's own backgrounds every cycle.
        """
        from tqdm import tqdm

        start, end = np.datetime64(start, "ns"), np.datetime64(end, "ns")
        leads = {lead: si for lead, si in self._step_index.items() if lead <= max(self.steps, default=0)}
        inits = [t for t in self.inits if start <= t and t + np.timedelta64(max(leads), "h") <= end]
        if not inits:
            raise DataError(f"no NWP initialisation with all leads verifying in {start} .. {end}")
        inits = [inits[i] for i in np.unique(np.linspace(0, len(inits) - 1, min(max_inits, len(inits))).astype(int))]
        sums: dict[int, np.ndarray] = {}
        counts: dict[int, int] = {}
        for init in tqdm(inits, desc="NWP pool bias", disable=not progress):
            block = self.ds.isel(time=self._init_index[init], step=list(leads.values()))
            fc = to_channels(block, self.channels)  # (lead, C, lat, lon)
            for si, lead in enumerate(leads):
                t = init + np.timedelta64(lead, "h")
                if not reference.has(t):
                    continue
                d = fc[si] - reference.at(t)
                sums[lead] = sums.get(lead, 0) + d
                counts[lead] = counts.get(lead, 0) + 1
        return {lead: (sums[lead] / counts[lead]).astype(np.float32) for lead in sums}

    def has_init(self, init: np.datetime64) -> bool:
        return np.datetime64(init, "ns") in self._init_index

    def leads_valid_at(self, t: np.datetime64) -> list[int]:
        """Leads (hours) of forecasts in the pool valid at ``t``."""
        t = np.datetime64(t, "ns")
        return [s for s in self.steps if (t - np.timedelta64(s, "h")) in self._init_index]

    def cold_start_lead(self, t: np.datetime64) -> int | None:
        """The shortest lead of any stored forecast valid at ``t`` (None: no forecast is)."""
        t = np.datetime64(t, "ns")
        leads = [s for s in self._step_index if (t - np.timedelta64(s, "h")) in self._init_index]
        return min(leads) if leads else None

    def cold_start(self, t: np.datetime64) -> np.ndarray:
        """The NWP state valid at ``t`` from its shortest stored lead, as it is (not debiased): what a
        cycle starting from an external centre's analysis or short forecast takes."""
        lead = self.cold_start_lead(t)
        if lead is None:
            raise DataError(f"no NWP forecast valid at {t} to cold-start from")
        ds = self.ds.isel(time=self._init_index[np.datetime64(t, "ns") - np.timedelta64(lead, "h")],
                          step=self._step_index[lead])
        return to_channels(ds, self.channels)

    def background(self, t: np.datetime64, lead: int) -> np.ndarray:
        init = np.datetime64(t, "ns") - np.timedelta64(lead, "h")
        return self.forecast(init, lead)

    def forecast(self, init: np.datetime64, lead: int) -> np.ndarray:
        ds = self.ds.isel(time=self._init_index[np.datetime64(init, "ns")], step=self._step_index[lead])
        x = to_channels(ds, self.channels)
        return x - self.bias[lead] if lead in self.bias else x


@dataclass(frozen=True)
class InsituTarget:
    """Where an observation group's channel observes a state channel (for L_obs)."""

    group: str
    value_index: int
    mask_index: int
    state_index: int
    #: Denormalisation of the gridded value: physical = value * scale + offset.
    scale: float
    offset: float


class GriddedObservations:
    """Gridded observations per cycle time, from a Zarr store written by ``fuxiops train prepare``.

    The store has, per group ``g``, a variable ``g`` with dims (time, ``g_channel``, latitude,
    longitude) as the ingest layer grids them (normalised values, zero fill, masks).
    """

    def __init__(self, ds: xr.Dataset, groups: Sequence[str] | None = None) -> None:
        self.ds = ds
        self.groups = [g for g in (groups or list(ds.data_vars)) if g in ds.data_vars and g != "present"]
        times = ds["time"].values.astype("datetime64[ns]")
        # Stores filled cycle by cycle mark the cycles written (a prepare may still be running or have
        # found no file for a cycle); older stores hold only written cycles.
        present = ds["present"].values.astype(bool) if "present" in ds else np.ones(len(times), bool)
        self.times = times[present]
        self._index = {t: i for i, t in enumerate(times) if present[i]}

    def channels(self, group: str) -> list[str]:
        return [str(c) for c in self.ds[f"{group}_channel"].values]

    def n_channels(self) -> dict[str, int]:
        return {g: self.ds.sizes[f"{g}_channel"] for g in self.groups}

    def has(self, t: np.datetime64) -> bool:
        return np.datetime64(t, "ns") in self._index

    def at(self, t: np.datetime64) -> dict[str, np.ndarray]:
        i = self._index.get(np.datetime64(t, "ns"))
        if i is None:
            return {}
        return {g: np.asarray(self.ds[g].isel(time=i).values, dtype=np.float32) for g in self.groups}

    def insitu_targets(self, state_names: Sequence[str], groups: Sequence[str]) -> list[InsituTarget]:
        """Value/mask channel pairs that observe a state channel directly (same name).

        The ingest layer names a gridded value channel like the state channel it
        observes (``t2m``, ``t850``) and its availability ``<name>_mask``; the
        normalisation is the group's ``normalisation`` attribute (JSON: name -> [mean, std]).
        """
        from fuxiops.models.assimilator_net import find_innovations  # the same naming rule as the network's

        direct = find_innovations({g: self.channels(g) for g in groups if g in self.groups}, state_names)
        out = []
        for d in direct:
            mean, std = json.loads(self.ds[d.group].attrs.get("normalisation", "{}")).get(d.name, (0.0, 1.0))
            out.append(InsituTarget(d.group, d.value, d.mask, d.state, float(std), float(mean)))
        return out


def open_gridded(path: str | Path) -> GriddedObservations | None:
    p = Path(path)
    if not p.exists():
        return None
    return GriddedObservations(xr.open_zarr(p, consolidated=None, chunks=None))
