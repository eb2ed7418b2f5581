"""Named regular latitude-longitude grids and WeatherBench 2 latitude weights.

All grids run latitude 90 -> -90 (poles included) and longitude 0 -> 360 - d,
as ERA5 and the ECMWF open data do. Grids are configuration: the production
grid is ``0.25deg`` (721 x 1440); the testbed uses coarser ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from fuxiops.errors import GridError


@dataclass(frozen=True)
class Grid:
    """A global regular lat-lon grid with ``n_lat`` rows (pole to pole) and ``n_lon`` columns."""

    name: str
    n_lat: int
    n_lon: int

    def __post_init__(self) -> None:
        if self.n_lat < 3 or self.n_lon < 4:
            raise GridError(f"grid {self.name!r}: needs at least 3 x 4 points, got {self.n_lat} x {self.n_lon}")
        if abs(180.0 / (self.n_lat - 1) - 360.0 / self.n_lon) > 1e-9:
            raise GridError(f"grid {self.name!r}: {self.n_lat} x {self.n_lon} is not equiangular "
                            f"(dlat={180.0 / (self.n_lat - 1)}, dlon={360.0 / self.n_lon})")

    @property
    def resolution(self) -> float:
        """Grid spacing in degrees."""
        return 360.0 / self.n_lon

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_lat, self.n_lon)

    @cached_property
    def latitudes(self) -> np.ndarray:
        """Row latitudes, 90 -> -90 (float64, exact multiples of the spacing)."""
        return 90.0 - np.arange(self.n_lat, dtype=np.float64) * self.resolution

    @cached_property
    def longitudes(self) -> np.ndarray:
        """Column longitudes, 0 -> 360 - d."""
        return np.arange(self.n_lon, dtype=np.float64) * self.resolution

    @cached_property
    def lat_weights(self) -> np.ndarray:
        """WeatherBench 2 cell-area weights per row, normalised to mean 1."""
        return latitude_weights(self.latitudes)

    def nearest_index(self, lat: np.ndarray | float, lon: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of the nearest grid point (longitude periodic)."""
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        if np.any(np.abs(lat) > 90.0) or not np.all(np.isfinite(lat)):
            raise GridError("latitude must be finite and within [-90, 90]")
        i = np.clip(np.rint((90.0 - lat) / self.resolution).astype(np.int64), 0, self.n_lat - 1)
        j = np.rint(np.mod(lon, 360.0) / self.resolution).astype(np.int64) % self.n_lon
        return i, j

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "n_lat": self.n_lat, "n_lon": self.n_lon}

    def check_coords(self, lat: np.ndarray, lon: np.ndarray, what: str = "data") -> None:
        """Raise a GridError naming the mismatch if coordinates are not this grid's."""
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        if lat.shape != (self.n_lat,) or lon.shape != (self.n_lon,):
            raise GridError(f"{what} is on a {lat.size} x {lon.size} grid, expected grid {self.name!r} "
                            f"({self.n_lat} x {self.n_lon})")
        if not np.allclose(lat, self.latitudes, atol=1e-6) or not np.allclose(lon, self.longitudes, atol=1e-6):
            raise GridError(f"{what} has {lat.size} x {lon.size} points but not the coordinates of grid "
                            f"{self.name!r} (latitude 90 -> -90, longitude 0 -> {360 - self.resolution:g})")


def latitude_weights(latitudes: np.ndarray) -> np.ndarray:
    """Cell-area weights sin(upper) - sin(lower), normalised to mean 1 (WeatherBench 2).

    Cell bounds are the midpoints between neighbouring rows, closed at the
    poles; works for ascending or descending latitudes.
    """
    lat = np.asarray(latitudes, dtype=np.float64)
    order = np.argsort(lat)
    sorted_rad = np.deg2rad(lat[order])
    bounds = np.concatenate([[-np.pi / 2], (sorted_rad[:-1] + sorted_rad[1:]) / 2, [np.pi / 2]])
    area = np.sin(bounds[1:]) - np.sin(bounds[:-1])
    area /= area.mean()
    out = np.empty_like(area)
    out[order] = area
    return out


def _regular(name: str, res: float) -> Grid:
    return Grid(name, int(round(180.0 / res)) + 1, int(round(360.0 / res)))


#: Named grids. ``0.25deg`` is production (ERA5 / ECMWF open data); ``2.8125deg``
#: (T42-like) is the testbed default; the coarser ones are for tests.
GRIDS: dict[str, Grid] = {
    g.name: g
    for g in (
        _regular("0.25deg", 0.25),
        _regular("0.5deg", 0.5),
        _regular("1.0deg", 1.0),
        _regular("1.40625deg", 1.40625),
        _regular("1.5deg", 1.5),
        _regular("2.8125deg", 2.8125),
        _regular("3.0deg", 3.0),
        _regular("5.625deg", 5.625),
        _regular("11.25deg", 11.25),
    )
}

PRODUCTION_GRID = "0.25deg"
TESTBED_GRID = "2.8125deg"


def get_grid(name: str) -> Grid:
    """A named grid, or an error listing the known names."""
    try:
        return GRIDS[name]
    except KeyError:
        raise GridError(f"unknown grid {name!r}; allowed: {', '.join(GRIDS)}") from None


def grid_from_coords(lat: np.ndarray, lon: np.ndarray, what: str = "data") -> Grid:
    """Identify the named grid of coordinate arrays (either latitude order is accepted
    only if it is 90 -> -90; other layouts must be regridded first)."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    for g in GRIDS.values():
        if g.shape == (lat.size, lon.size):
            g.check_coords(lat, lon, what)
            return g
    raise GridError(f"{what} is on a {lat.size} x {lon.size} grid that matches no named grid; "
                    f"known: {', '.join(f'{g.name} ({g.n_lat}x{g.n_lon})' for g in GRIDS.values())}")
