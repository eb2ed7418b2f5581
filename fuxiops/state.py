"""The atmospheric state as labelled xarray data and as channel arrays.

Convention shared by every layer (docs/architecture.md):

* dims ``time`` (or ``step`` for forecasts), ``level`` (hPa, int, top to
  bottom), ``latitude`` (90 -> -90), ``longitude`` (0 -> 360 - d);
* one data variable per catalog variable, named by its short name:
  pressure-level variables (``z``, ``t``, ...) have a ``level`` dim,
  single-level ones (``t2m``, ``msl``, ``tp6``) do not;
* float32 values in SI units with CF attributes from the catalog.

Networks see a channel array ``(..., C, lat, lon)`` in the canonical channel
order of :class:`~fuxiops.catalog.VariableSet`; these helpers convert both
ways without copying more than needed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import xarray as xr

from fuxiops.catalog import Channel, VariableSet, get_variable
from fuxiops.errors import DataError, UnknownVariableError
from fuxiops.grids import Grid

LEVEL = "level"
LAT = "latitude"
LON = "longitude"


def variable_attrs(name: str) -> dict[str, str | int]:
    """CF and GRIB attributes of a catalog variable, for data variables."""
    v = get_variable(name)
    return {"long_name": v.long_name, "units": v.units, "standard_name": v.standard_name,
            "GRIB_paramId": v.param_id, "GRIB_shortName": v.ecmwf_short_name}


def coord_attrs() -> dict[str, dict[str, str]]:
    return {
        LAT: {"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude", "axis": "Y"},
        LON: {"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude", "axis": "X"},
        LEVEL: {"units": "hPa", "standard_name": "air_pressure", "long_name": "pressure level", "positive": "down",
                "axis": "Z"},
    }


def check_dataset(ds: xr.Dataset, variables: VariableSet, grid: Grid, what: str = "state",
                  include_diagnostics: bool = False) -> None:
    """Raise a clear error if ``ds`` lacks a variable or level, or is on another grid."""
    grid.check_coords(ds[LAT].values, ds[LON].values, what)
    names = list(variables.upper_air) + list(variables.surface)
    if include_diagnostics:
        names += list(variables.diagnostics)
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        raise UnknownVariableError(missing[0], list(ds.data_vars), what=f"variable in {what} (missing)")
    if variables.upper_air:
        if LEVEL not in ds.coords:
            raise DataError(f"{what} has no 'level' coordinate but pressure-level variables are configured")
        have = {int(x) for x in ds[LEVEL].values}
        lack = [lev for lev in variables.levels if lev not in have]
        if lack:
            raise DataError(f"{what} lacks pressure levels {lack} hPa; it has {sorted(have)}")


def to_channels(ds: xr.Dataset, channels: Sequence[Channel], dtype: type = np.float32) -> np.ndarray:
    """Stack a state dataset into an array ``(*other_dims, C, lat, lon)`` in ``channels`` order."""
    arrays = []
    for ch in channels:
        da = ds[ch.variable.name]
        if ch.variable.is_upper_air:
            da = da.sel({LEVEL: ch.level})
        da = da.transpose(..., LAT, LON)
        arrays.append(np.asarray(da.values, dtype=dtype))
    return np.stack(arrays, axis=-3)


def from_channels(array: np.ndarray, channels: Sequence[Channel], grid: Grid,
                  leading: dict[str, np.ndarray] | None = None, attrs: dict[str, object] | None = None) -> xr.Dataset:
    """Build a state dataset from ``(*leading, C, lat, lon)``; ``leading`` names the leading dims in order."""
    leading = leading or {}
    lead_dims = list(leading)
    if array.ndim != len(lead_dims) + 3:
        raise DataError(f"array has {array.ndim} dims, expected {len(lead_dims)} leading dims + (C, lat, lon)")
    if array.shape[-3] != len(channels):
        raise DataError(f"array has {array.shape[-3]} channels, expected {len(channels)}")
    if array.shape[-2:] != grid.shape:
        raise DataError(f"array is {array.shape[-2:]}, expected grid {grid.name} {grid.shape}")
    data_vars: dict[str, xr.DataArray] = {}
    by_var: dict[str, list[tuple[int, Channel]]] = {}
    for i, ch in enumerate(channels):
        by_var.setdefault(ch.variable.name, []).append((i, ch))
    levels_all: list[int] = []
    for name, items in by_var.items():
        var = items[0][1].variable
        if var.is_upper_air:
            idx = [i for i, _ in items]
            levels = [int(ch.level) for _, ch in items]  # type: ignore[arg-type]
            levels_all = levels_all or levels
            data = np.take(array, idx, axis=-3)
            data_vars[name] = xr.DataArray(data, dims=[*lead_dims, LEVEL, LAT, LON],
                                           coords={LEVEL: levels}, attrs=variable_attrs(name))
        else:
            data_vars[name] = xr.DataArray(array[..., items[0][0], :, :], dims=[*lead_dims, LAT, LON],
                                           attrs=variable_attrs(name))
    coords: dict[str, object] = {LAT: (LAT, grid.latitudes, coord_attrs()[LAT]),
                                 LON: (LON, grid.longitudes, coord_attrs()[LON])}
    coords.update({k: v for k, v in leading.items()})
    ds = xr.Dataset(data_vars, coords=coords, attrs=dict(attrs or {}))
    if LEVEL in ds.coords:
        ds[LEVEL].attrs.update(coord_attrs()[LEVEL])
    return ds
