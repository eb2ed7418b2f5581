"""Checks one forecast step against its run before any writer sees it.

A step must carry the run's reference time and a lead time in hours, lie on
the run's grid, hold exactly the run's variables and levels, and contain only
finite values inside the catalog's physical bounds; NaN marks intended
missing points (GRIB bitmap, NetCDF/Zarr fill value), but a field that is all
NaN, or any infinity, is a broken forecast. Errors name the field and step.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from fuxiops.errors import DataError, UnknownVariableError
from fuxiops.state import LAT, LEVEL, LON

from .base import RunMeta, StepData


def step_hours(ds: xr.Dataset) -> int:
    """The lead time of a step dataset, in whole hours (``step`` scalar or length 1; int hours or timedelta)."""
    if "step" not in ds.coords and "step" not in ds.dims:
        raise DataError("forecast step dataset has no 'step' coordinate (lead time in hours)")
    s = np.asarray(ds["step"].values).reshape(-1)
    if s.size != 1:
        raise DataError(f"a forecast step dataset must hold one lead time, got {s.size} steps")
    v = s[0]
    if np.issubdtype(s.dtype, np.timedelta64):
        hours = v / np.timedelta64(1, "h")
    else:
        hours = float(v)
    if not np.isfinite(hours) or hours != int(hours) or hours < 0:
        raise DataError(f"lead time must be a non-negative whole number of hours, got {v!r}")
    return int(hours)


def _reference_time(ds: xr.Dataset) -> pd.Timestamp | None:
    if "time" not in ds.coords:
        return None
    t = np.asarray(ds["time"].values).reshape(-1)
    if t.size != 1:
        raise DataError(f"'time' (reference time) must be scalar in a forecast step, got {t.size} values")
    return pd.Timestamp(t[0])


def check_step(ds: xr.Dataset, run: RunMeta, expected_step: int | None = None) -> StepData:
    """Validate and normalise one step: float32 arrays (level, lat, lon) / (lat, lon) in the run's order."""
    step = step_hours(ds)
    if expected_step is not None and step != expected_step:
        raise DataError(f"forecast yielded step {step} h where step {expected_step} h was expected "
                        f"(run {run.run_id} lead times: {list(run.steps)})")
    ref = _reference_time(ds)
    if ref is not None and ref != pd.Timestamp(run.reference_time):
        raise DataError(f"step {step} h has reference time {ref.isoformat()}, run {run.run_id} is "
                        f"{run.reference_time.isoformat()}")
    run.grid.check_coords(ds[LAT].values, ds[LON].values, f"step {step} h")
    if "step" in ds.dims:
        ds = ds.isel(step=0)
    channels = run.channels_at(step)
    wanted = list(dict.fromkeys(c.variable.name for c in channels))
    optional = {c.variable.name for c in run.variables.diagnostic_channels}
    for name in ds.data_vars:
        if name not in wanted and name not in optional:
            raise UnknownVariableError(str(name), wanted, what=f"variable in step {step} h of run {run.run_id}")
    missing = [n for n in wanted if n not in ds.data_vars]
    if missing:
        raise DataError(f"step {step} h of run {run.run_id} lacks variable(s) {missing}; "
                        f"it has {sorted(map(str, ds.data_vars))}")
    out: dict[str, xr.DataArray] = {}
    levels = list(run.variables.levels)
    for name in wanted:
        da = ds[name]
        var = channels[[c.variable.name for c in channels].index(name)].variable
        if var.is_upper_air:
            if LEVEL not in da.dims:
                raise DataError(f"{name} at step {step} h has no 'level' dimension")
            have = [int(x) for x in da[LEVEL].values]
            lack = [lev for lev in levels if lev not in have]
            if lack:
                raise DataError(f"{name} at step {step} h lacks pressure levels {lack} hPa; it has {have}")
            if have != levels:
                da = da.sel({LEVEL: levels})
            da = da.transpose(LEVEL, LAT, LON)
        else:
            extra = [d for d in da.dims if d not in (LAT, LON)]
            if extra:
                raise DataError(f"{name} at step {step} h has unexpected dimension(s) {extra}")
            da = da.transpose(LAT, LON)
        values = np.ascontiguousarray(da.values, dtype=np.float32)
        _check_values(values, name, step, var.valid_min, var.valid_max, levels if var.is_upper_air else None)
        out[name] = xr.DataArray(values, dims=da.dims, attrs=da.attrs)
    coords = {LAT: ds[LAT].values, LON: ds[LON].values}
    if run.variables.upper_air:
        coords[LEVEL] = np.asarray(levels, dtype=np.int64)
    return StepData(step, xr.Dataset(out, coords=coords))


def _check_values(values: np.ndarray, name: str, step: int, lo: float, hi: float,
                  levels: list[int] | None) -> None:
    fields = values.reshape(-1, *values.shape[-2:])
    for i, f in enumerate(fields):
        label = f"{name}{levels[i]}" if levels else name
        mn, mx = f.min(), f.max()
        if np.isnan(mn) or np.isnan(mx):
            finite = f[~np.isnan(f)]
            if finite.size == 0:
                raise DataError(f"{label} at step {step} h is entirely missing (all NaN): refusing to publish")
            mn, mx = finite.min(), finite.max()
        if not (np.isfinite(mn) and np.isfinite(mx)):
            raise DataError(f"{label} at step {step} h contains infinite values: refusing to publish")
        if mn < lo or mx > hi:
            raise DataError(f"{label} at step {step} h has values in [{mn:g}, {mx:g}], outside the physical "
                            f"range [{lo:g}, {hi:g}] of the catalog: refusing to publish")
