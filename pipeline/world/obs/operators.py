"""Observation operators: a gridded state -> what an instrument at a given place would measure.

* horizontal: bilinear in latitude/longitude on the regular grid, periodic in
  longitude (exact for fields linear in latitude and longitude);
* vertical: linear in ln p between pressure levels (profiles, aircraft);
  heights -> pressure by inverting the geopotential profile (ln p linear in Z);
* GNSS-RO refractivity N = 77.6 P/T + 3.73e5 e/T^2 (P, e in hPa; the dry world
  has e = 0 but the formula keeps it);
* microwave-sounder brightness temperature: TB_c = sum_k W_c(p_k) T(p_k), with
  normalised Gaussian weighting functions in ln p (see :data:`MWTS_CHANNELS`);
  no surface emission term, no radiative transfer beyond this weighting. Defined
  in :mod:`fuxiops.pipeline.obs.mwts` (shared with the QC background operator).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fuxiops.errors import DataError
# The sounder's weighting functions are shared with the observation QC's H(x_b): one definition, re-exported here.
from fuxiops.pipeline.obs.mwts import MWTS_CHANNELS, brightness_temperature, mwts_weights  # noqa: F401

GRAVITY = 9.80665


@dataclass(frozen=True)
class Bilinear:
    """Precomputed bilinear weights of points on a regular lat-lon grid (lat 90 -> -90, lon 0 -> 360-d)."""

    i0: np.ndarray
    j0: np.ndarray
    j1: np.ndarray
    wy: np.ndarray
    wx: np.ndarray

    @classmethod
    def build(cls, grid_lat: np.ndarray, grid_lon: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> "Bilinear":
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        if lat.shape != lon.shape:
            raise DataError(f"latitude and longitude arrays differ in shape: {lat.shape} vs {lon.shape}")
        if np.any(~np.isfinite(lat)) or np.any(np.abs(lat) > 90):
            raise DataError("observation latitudes must be finite and within [-90, 90]")
        dlat = float(grid_lat[0] - grid_lat[1])
        dlon = float(grid_lon[1] - grid_lon[0])
        y = (float(grid_lat[0]) - lat) / dlat
        i0 = np.clip(np.floor(y).astype(np.int64), 0, len(grid_lat) - 2)
        x = np.mod(lon - float(grid_lon[0]), 360.0) / dlon
        j0 = np.floor(x).astype(np.int64) % len(grid_lon)
        return cls(i0=i0, j0=j0, j1=(j0 + 1) % len(grid_lon), wy=y - i0, wx=x - np.floor(x))

    def __call__(self, field: np.ndarray) -> np.ndarray:
        """Interpolate ``field[..., lat, lon]`` -> ``[..., n_points]``."""
        f = np.asarray(field)
        a = f[..., self.i0, self.j0] * (1 - self.wx) + f[..., self.i0, self.j1] * self.wx
        b = f[..., self.i0 + 1, self.j0] * (1 - self.wx) + f[..., self.i0 + 1, self.j1] * self.wx
        return a * (1 - self.wy) + b * self.wy


def interp_log_p(levels_hpa: np.ndarray, profile: np.ndarray, p_hpa: np.ndarray) -> np.ndarray:
    """Linear interpolation in ln p of ``profile[level, n]`` to pressures ``p_hpa[n]`` (clamped at the ends)."""
    lev = np.log(np.asarray(levels_hpa, dtype=np.float64))
    order = np.argsort(lev)
    lev, prof = lev[order], np.asarray(profile, dtype=np.float64)[order]
    lp = np.clip(np.log(np.asarray(p_hpa, dtype=np.float64)), lev[0], lev[-1])
    k = np.clip(np.searchsorted(lev, lp) - 1, 0, len(lev) - 2)
    w = (lp - lev[k]) / (lev[k + 1] - lev[k])
    cols = np.arange(prof.shape[1])
    return prof[k, cols] * (1 - w) + prof[k + 1, cols] * w


def pressure_at_height(levels_hpa: np.ndarray, z_profile: np.ndarray, height_m: np.ndarray) -> np.ndarray:
    """Pressure (hPa) at geopotential heights ``height_m[h]`` for columns ``z_profile[level, n]`` (m2 s-2).

    ln p is linear in Z between levels; returns NaN above the top level. Result shape (h, n).
    """
    lev = np.asarray(levels_hpa, dtype=np.float64)
    order = np.argsort(-lev)  # bottom (high p) first: Z increasing
    lnp = np.log(lev[order])
    zh = np.asarray(z_profile, dtype=np.float64)[order] / GRAVITY  # (L, n), increasing
    out = np.full((len(height_m), zh.shape[1]), np.nan)
    for i, h in enumerate(np.asarray(height_m, dtype=np.float64)):
        k = np.sum(zh < h, axis=0) - 1  # layer index below h
        kk = np.clip(k, 0, len(lev) - 2)
        cols = np.arange(zh.shape[1])
        w = (h - zh[kk, cols]) / (zh[kk + 1, cols] - zh[kk, cols])
        val = np.exp(lnp[kk] + w * (lnp[kk + 1] - lnp[kk]))
        val = np.where(k >= len(lev) - 1, np.nan, val)  # above the top level
        out[i] = val
    return out


def refractivity(p_hpa: np.ndarray, t_k: np.ndarray, e_hpa: np.ndarray | float = 0.0) -> np.ndarray:
    """Smith-Weintraub refractivity N = 77.6 P/T + 3.73e5 e/T^2 (P, e in hPa, T in K)."""
    t = np.asarray(t_k, dtype=np.float64)
    return 77.6 * np.asarray(p_hpa, dtype=np.float64) / t + 3.73e5 * np.asarray(e_hpa, dtype=np.float64) / t ** 2


def wind_dir_speed(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Meteorological wind direction (degrees the wind blows FROM, 0..360) and speed."""
    speed = np.hypot(u, v)
    direction = np.mod(np.degrees(np.arctan2(-u, -v)), 360.0)
    return direction, speed


def wind_uv(direction: np.ndarray, speed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rad = np.radians(direction)
    return -speed * np.sin(rad), -speed * np.cos(rad)
