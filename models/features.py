"""Static and clock input features of the networks (numpy; no torch).

Static planes per grid: land-sea mask, orography, sin/cos latitude, sin/cos
longitude. Clock features of a valid time: sin/cos of the hour of day and of
the day of year. The land-sea mask comes from the ``global-land-mask``
package (a 1 km global coastline raster) sampled at grid points; orography
comes from a dataset when one is given, else it is flat (the testbed world is
a Held-Suarez atmosphere without mountains) and the source says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from fuxiops.errors import DataError
from fuxiops.grids import Grid
from fuxiops.state import LAT, LON

STATIC_NAMES = ("land_sea_mask", "orography", "sin_lat", "cos_lat", "sin_lon", "cos_lon")
CLOCK_NAMES = ("sin_hour", "cos_hour", "sin_doy", "cos_doy")
#: Orography is fed in kilometres so that it is O(1) like the other planes.
OROGRAPHY_SCALE_M = 1000.0


@dataclass(frozen=True)
class StaticFields:
    """The static planes ``(6, lat, lon)`` of a grid and where they came from."""

    grid: Grid
    planes: np.ndarray
    source: str

    @property
    def names(self) -> tuple[str, ...]:
        return STATIC_NAMES


def land_sea_mask(grid: Grid) -> np.ndarray:
    """1 over land, 0 over sea at the grid points (global-land-mask raster)."""
    from global_land_mask import globe

    lat2, lon2 = np.meshgrid(grid.latitudes, grid.longitudes, indexing="ij")
    lon180 = ((lon2 + 180.0) % 360.0) - 180.0
    # The raster covers [-90, 90) in latitude; nudge the south pole row inside it.
    lat_c = np.clip(lat2, -89.999, 89.999)
    return globe.is_land(lat_c, lon180).astype(np.float32)


def static_fields(grid: Grid, orography: xr.DataArray | np.ndarray | None = None,
                  lsm: xr.DataArray | np.ndarray | None = None) -> StaticFields:
    """Static planes of ``grid``; orography (m) and land-sea mask may come from data on that grid."""
    src = []
    if lsm is None:
        mask = land_sea_mask(grid)
        src.append("lsm: global-land-mask")
    else:
        mask = _plane(lsm, grid, "land-sea mask")
        src.append("lsm: provided")
    if orography is None:
        orog = np.zeros(grid.shape, dtype=np.float32)
        src.append("orography: flat (testbed world)")
    else:
        orog = _plane(orography, grid, "orography") / OROGRAPHY_SCALE_M
        src.append("orography: provided")
    lat = np.deg2rad(grid.latitudes)[:, None] * np.ones((1, grid.n_lon))
    lon = np.ones((grid.n_lat, 1)) * np.deg2rad(grid.longitudes)[None, :]
    planes = np.stack([mask, orog, np.sin(lat), np.cos(lat), np.sin(lon), np.cos(lon)]).astype(np.float32)
    return StaticFields(grid, planes, "; ".join(src))


def _plane(a: xr.DataArray | np.ndarray, grid: Grid, what: str) -> np.ndarray:
    if isinstance(a, xr.DataArray):
        grid.check_coords(a[LAT].values, a[LON].values, what)
        a = a.transpose(LAT, LON).values
    arr = np.asarray(a, dtype=np.float32)
    if arr.shape != grid.shape:
        raise DataError(f"{what} has shape {arr.shape}, expected grid {grid.name} {grid.shape}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{what} has non-finite values")
    return arr


def clock_features(time: np.datetime64 | str) -> np.ndarray:
    """``(4,)`` float32: sin/cos of hour of day and of day of year (UTC) of ``time``."""
    t = np.datetime64(time, "s")
    day = t.astype("datetime64[D]")
    hour = float((t - day) / np.timedelta64(1, "s")) / 3600.0
    year = t.astype("datetime64[Y]")
    doy = float((day - year.astype("datetime64[D]")) / np.timedelta64(1, "D")) + hour / 24.0
    a, b = 2.0 * np.pi * hour / 24.0, 2.0 * np.pi * doy / 365.2425
    return np.array([np.sin(a), np.cos(a), np.sin(b), np.cos(b)], dtype=np.float32)
