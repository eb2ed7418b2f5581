"""Zarr stores of the world, written chunk by chunk so that an interrupted build can resume.

A store is created once with its full time axis (metadata and coordinates
only, written aside and renamed into place), then filled one time-chunk at a
time with region writes. Rewriting a chunk replaces its files whole, so a build
killed mid-chunk and resumed produces the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr

from fuxiops.catalog import VariableSet
from fuxiops.grids import Grid
from fuxiops.state import LAT, LEVEL, LON, coord_attrs, variable_attrs

TIME_ENCODING_UNITS = "hours since 1970-01-01 00:00:00"


def _template(grid: Grid, variables: VariableSet, leading: dict[str, np.ndarray],
              chunks: dict[str, int], attrs: dict[str, object]) -> xr.Dataset:
    lead_dims = list(leading)
    data_vars = {}
    for name in list(variables.upper_air) + list(variables.surface):
        dims = lead_dims + ([LEVEL] if name in variables.upper_air else []) + [LAT, LON]
        shape = tuple(len(leading[d]) for d in lead_dims) + ((len(variables.levels),) if LEVEL in dims else ()) \
            + grid.shape
        ch = tuple(chunks.get(d, s) for d, s in zip(dims, shape))
        data_vars[name] = xr.DataArray(da.full(shape, np.nan, dtype=np.float32, chunks=ch), dims=dims,
                                       attrs=variable_attrs(name))
    ca = coord_attrs()
    coords: dict[str, object] = {LAT: (LAT, grid.latitudes, ca[LAT]), LON: (LON, grid.longitudes, ca[LON]),
                                 LEVEL: (LEVEL, np.asarray(variables.levels, dtype=np.int64), ca[LEVEL])}
    for k, v in leading.items():
        coords[k] = (k, v)
    ds = xr.Dataset(data_vars, coords=coords, attrs=dict(attrs))
    if "time" in ds.coords:
        ds["time"].attrs.update(standard_name="time", long_name="time" if "step" not in leading
                                else "forecast reference time", axis="T")
    if "step" in ds.coords:
        ds["step"].attrs.update(long_name="lead time", units="hours", standard_name="forecast_period")
        ds = ds.assign_coords(valid_time=(("time", "step"),
                                          ds["time"].values[:, None] + ds["step"].values[None, :].astype("timedelta64[h]")))
        ds["valid_time"].attrs.update(standard_name="time", long_name="valid time")
    return ds


def create_store(path: Path, grid: Grid, variables: VariableSet, leading: dict[str, np.ndarray],
                 chunks: dict[str, int], attrs: dict[str, object]) -> None:
    """Create (metadata + coordinates only) unless it exists; atomic via a temporary name."""
    path = Path(path)
    if path.exists():
        return
    tmp = path.with_name(path.name + ".creating")
    if tmp.exists():
        shutil.rmtree(tmp)
    ds = _template(grid, variables, leading, chunks, attrs)
    enc: dict[str, dict[str, object]] = {n: {"chunks": tuple(ds[n].data.chunksize)} for n in ds.data_vars}
    for tname in ("time", "valid_time"):
        if tname in ds.coords:
            enc[tname] = {"units": TIME_ENCODING_UNITS, "dtype": "int64", "calendar": "proleptic_gregorian"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(tmp, mode="w", compute=False, encoding=enc, consolidated=True, zarr_format=2)
    tmp.rename(path)


def write_region(path: Path, ds: xr.Dataset, starts: dict[str, int]) -> None:
    """Write ``ds`` (data variables only) at offsets ``starts`` ({dim: first index}) of an existing store.

    The region must cover whole chunks, so that each chunk file is rewritten whole.
    """
    region = {dim: slice(start, start + ds.sizes[dim]) for dim, start in starts.items()}
    out = ds[list(ds.data_vars)].drop_vars(list(ds.coords), errors="ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out.to_zarr(path, region=region, mode="r+", consolidated=True)


def open_store(path: Path) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_zarr(path, consolidated=True)
