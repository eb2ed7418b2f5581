"""Model equivalents of observations from a background state (H(x_b)).

The background is a state Dataset in the conventions of docs/architecture.md
(``level`` in hPa, ``latitude`` 90 -> -90, ``longitude`` 0 -> 360 - d).
Values are interpolated bilinearly in the horizontal (longitude periodic)
and linearly in log-pressure in the vertical. GNSS-RO refractivity is
computed from the background's geopotential, temperature (and humidity when
present): N = 77.6 P/T + 3.73e5 e/T^2. Brightness temperatures of the
microwave temperature sounder (instrument ``mwts``) use the sounder's own
weighting functions (:mod:`fuxiops.pipeline.obs.mwts`, the very operator the
testbed world simulates them with) over the background's pressure levels,
with no surface term and no bias correction: satellite biases show up in
O-B, as a QC report should show them. Rows with no equivalent (other
radiance instruments, which need a radiative-transfer model such as RTTOV
that fuxiops does not have; values above/below the model levels) get NaN,
and :func:`explain_missing` says why.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import xarray as xr

from fuxiops.catalog import G0
from fuxiops.errors import DataError
from fuxiops.pipeline.obs.mwts import MWTS_CHANNELS, channel_index, mwts_weights

LAT, LON, LEVEL = "latitude", "longitude", "level"
SURFACE_VARS = ("t2m", "u10", "v10", "msl")
PRESSURE_VARS = ("z", "t", "u", "v", "r")
#: Radiance instruments with an observation operator here; any other needs RTTOV/CRTM.
RADIANCE_OPERATORS = ("mwts",)


def select_time(bg: xr.Dataset, cycle_time: datetime | np.datetime64 | None) -> xr.Dataset:
    """The background at the cycle time (nearest), dropping a time/step dim."""
    for dim in ("time", "step"):
        if dim in bg.dims:
            if bg.sizes[dim] == 1 or cycle_time is None or dim == "step":
                bg = bg.isel({dim: 0})
            else:
                bg = bg.sel({dim: np.datetime64(cycle_time, "ns")}, method="nearest")
    return bg


class HorizontalWeights:
    """Bilinear weights of points on a regular lat-lon grid (longitude periodic)."""

    def __init__(self, lats: np.ndarray, lons: np.ndarray, grid_lat: np.ndarray, grid_lon: np.ndarray) -> None:
        glat = np.asarray(grid_lat, dtype=np.float64)
        glon = np.asarray(grid_lon, dtype=np.float64)
        if glat.size < 2 or glon.size < 2:
            raise DataError("background grid needs at least 2 x 2 points")
        # Fractional row index (either latitude order), clipped to the grid.
        order = np.argsort(glat)
        fi = np.interp(lats, glat[order], order.astype(np.float64))
        self.i0 = np.clip(np.floor(fi).astype(np.int64), 0, glat.size - 1)
        self.i1 = np.clip(self.i0 + 1, 0, glat.size - 1)
        self.wi = np.clip(fi - self.i0, 0.0, 1.0)
        dlon = 360.0 / glon.size
        fj = np.mod(lons - glon[0], 360.0) / dlon
        self.j0 = np.floor(fj).astype(np.int64) % glon.size
        self.j1 = (self.j0 + 1) % glon.size
        self.wj = fj - np.floor(fj)

    def __call__(self, field: np.ndarray) -> np.ndarray:
        """Interpolate ``field`` (..., lat, lon) to the points -> (points, ...)."""
        f = np.moveaxis(field, (-2, -1), (0, 1))
        a = f[self.i0, self.j0]
        b = f[self.i0, self.j1]
        c = f[self.i1, self.j0]
        d = f[self.i1, self.j1]
        wi = self.wi.reshape((-1,) + (1,) * (a.ndim - 1))
        wj = self.wj.reshape((-1,) + (1,) * (a.ndim - 1))
        return (1 - wi) * ((1 - wj) * a + wj * b) + wi * ((1 - wj) * c + wj * d)


def _logp_interp(profiles: np.ndarray, levels_hpa: np.ndarray, p_pa: np.ndarray) -> np.ndarray:
    """Interpolate (points, L) profiles to pressures (Pa) linearly in log p; NaN outside the levels."""
    order = np.argsort(levels_hpa)
    lp = np.log(np.asarray(levels_hpa, dtype=np.float64)[order] * 100.0)
    prof = profiles[:, order]
    x = np.log(np.where(p_pa > 0, p_pa, np.nan))
    k = np.clip(np.searchsorted(lp, x) - 1, 0, lp.size - 2)
    x0, x1 = lp[k], lp[k + 1]
    rows = np.arange(len(x))
    w = (x - x0) / (x1 - x0)
    out = (1 - w) * prof[rows, k] + w * prof[rows, k + 1]
    out[~((x >= lp[0] - 1e-9) & (x <= lp[-1] + 1e-9))] = np.nan
    return out


def _refractivity(bg: xr.Dataset, hw: HorizontalWeights, height_m: np.ndarray) -> np.ndarray:
    if "z" not in bg or "t" not in bg:
        return np.full(height_m.shape, np.nan)
    levels = np.asarray(bg[LEVEL].values, dtype=np.float64)
    order = np.argsort(-levels)  # bottom (high p) to top: height increasing
    zp = hw(np.asarray(bg["z"].transpose(LEVEL, LAT, LON).values, dtype=np.float64))[:, order] / G0
    tp = hw(np.asarray(bg["t"].transpose(LEVEL, LAT, LON).values, dtype=np.float64))[:, order]
    lnp = np.log(levels[order] * 100.0)
    rp = None
    if "r" in bg:
        rp = hw(np.asarray(bg["r"].transpose(LEVEL, LAT, LON).values, dtype=np.float64))[:, order]
    # Vectorised over observations: bracket each height in its own column's geopotential heights.
    h = np.asarray(height_m, dtype=np.float64)
    n, nl = zp.shape
    k = np.clip((zp <= h[:, None]).sum(axis=1) - 1, 0, nl - 2)
    rows = np.arange(n)
    z0, z1 = zp[rows, k], zp[rows, k + 1]
    w = (h - z0) / np.where(z1 != z0, z1 - z0, 1.0)
    inside = (h >= zp[:, 0]) & (h <= zp[:, -1])
    lp = (1 - w) * lnp[k] + w * lnp[k + 1]
    t = (1 - w) * tp[rows, k] + w * tp[rows, k + 1]
    p_hpa = np.exp(lp) / 100.0
    nval = 77.6 * p_hpa / t
    if rp is not None:
        rh = (1 - w) * rp[rows, k] + w * rp[rows, k + 1]
        es = 6.112 * np.exp(17.67 * (t - 273.15) / (t - 29.65))
        nval = nval + 3.73e5 * (rh / 100.0 * es) / t ** 2
    return np.where(inside, nval, np.nan)


def _mwts_tb(bg: xr.Dataset, hw: HorizontalWeights, channels: np.ndarray) -> np.ndarray:
    """Sounder brightness temperatures: the background temperature column at each point weighted
    by the channel's weighting function on the background's levels (NaN for unknown channels)."""
    levels = np.asarray(bg[LEVEL].values, dtype=np.float64)
    prof = hw(np.asarray(bg["t"].transpose(LEVEL, LAT, LON).values, dtype=np.float64))  # (points, L)
    tb = prof @ mwts_weights(levels).T  # (points, C)
    ci = channel_index(channels)
    return np.where(ci >= 0, tb[np.arange(len(ci)), np.maximum(ci, 0)], np.nan)


def _instrument(df: pd.DataFrame) -> np.ndarray:
    if "instrument" not in df:
        return np.full(len(df), "", dtype=object)
    return df["instrument"].astype(object).fillna("").to_numpy(object)


def model_equivalents(df: pd.DataFrame, bg: xr.Dataset) -> np.ndarray:
    """H(x_b) per row of an observation DataFrame (NaN where the background has none)."""
    for c in (LAT, LON):
        if c not in bg.coords:
            raise DataError(f"background has no {c!r} coordinate (expected a state dataset)")
    out = np.full(len(df), np.nan)
    var = df["variable"].to_numpy(object)
    kind = df["vertical_kind"].to_numpy(object)
    lat = df["latitude"].to_numpy(np.float64)
    lon = df["longitude"].to_numpy(np.float64)
    vert = df["vertical"].to_numpy(np.float64)
    good = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90)
    glat, glon = bg[LAT].values, bg[LON].values
    for name in SURFACE_VARS:
        m = good & (var == name)
        if m.any() and name in bg:
            field = np.asarray(bg[name].transpose(LAT, LON).values, dtype=np.float64)
            out[m] = HorizontalWeights(lat[m], lon[m], glat, glon)(field)
    if LEVEL in bg.coords:
        levels = np.asarray(bg[LEVEL].values, dtype=np.float64)
        for name in PRESSURE_VARS:
            m = good & (var == name) & (kind == "pressure")
            if m.any() and name in bg and levels.size >= 2:
                field = np.asarray(bg[name].transpose(LEVEL, LAT, LON).values, dtype=np.float64)
                prof = HorizontalWeights(lat[m], lon[m], glat, glon)(field)  # (points, L)
                out[m] = _logp_interp(prof, levels, vert[m])
        m = good & (var == "refractivity") & (kind == "height")
        if m.any() and levels.size >= 2:
            out[m] = _refractivity(bg, HorizontalWeights(lat[m], lon[m], glat, glon), vert[m])
        m = good & (var == "brightness_temperature") & (kind == "channel") & (_instrument(df) == "mwts")
        if m.any() and "t" in bg and levels.size >= 2:
            out[m] = _mwts_tb(bg, HorizontalWeights(lat[m], lon[m], glat, glon), vert[m])
    return out


def _reason(variable: str, kind: str, instrument: str, bg: xr.Dataset, channels: np.ndarray) -> str:
    """Why rows of one (variable, vertical kind, instrument) have no model equivalent."""
    has_levels = LEVEL in bg.coords and bg[LEVEL].size >= 2
    if variable == "brightness_temperature":
        if instrument not in RADIANCE_OPERATORS:
            return (f"no observation operator for radiance instrument {instrument or 'unknown'!r} (only "
                    f"{', '.join(RADIANCE_OPERATORS)} is modelled; other sounders need a radiative-transfer "
                    "model such as RTTOV, which fuxiops does not have)")
        if "t" not in bg or not has_levels:
            return "background has no temperature on pressure levels"
        known = {c for c, _, _ in MWTS_CHANNELS}
        if not set(np.unique(channels).tolist()) <= known:
            return f"channel not modelled by the mwts operator (channels {sorted(known)})"
    elif variable in SURFACE_VARS:
        if variable not in bg:
            return f"background has no {variable!r}"
    elif variable in PRESSURE_VARS and kind == "pressure":
        if variable not in bg or not has_levels:
            return f"background has no {variable!r} on pressure levels"
        return "pressure outside the background's levels"
    elif variable == "refractivity" and kind == "height":
        if "z" not in bg or "t" not in bg or not has_levels:
            return "background has no geopotential and temperature on pressure levels"
        return "height outside the background's geopotential heights"
    else:
        return f"no observation operator for {variable!r} with a {kind!r} vertical coordinate"
    return "invalid position or outside the background grid"


def explain_missing(df: pd.DataFrame, bg: xr.Dataset, equivalents: np.ndarray) -> list[dict[str, object]]:
    """Rows with no model equivalent, per (report type, instrument, variable, reason), with counts.

    The background check skips these rows; a QC report lists them so a user sees,
    e.g., that HIRS radiances were never background-checked and why.
    """
    miss = ~np.isfinite(np.asarray(equivalents, dtype=np.float64))
    if not miss.any():
        return []
    sub = pd.DataFrame({"report_type": df["report_type"].astype(object).to_numpy()[miss],
                        "instrument": _instrument(df)[miss],
                        "variable": df["variable"].astype(object).to_numpy()[miss],
                        "vertical_kind": df["vertical_kind"].astype(object).to_numpy()[miss],
                        "vertical": df["vertical"].to_numpy(np.float64)[miss]})
    # Sounder rows of unknown channels get their own group (and reason) apart from the known ones.
    sub["known"] = (sub["instrument"] != "mwts") | (channel_index(sub["vertical"].to_numpy()) >= 0)
    out: list[dict[str, object]] = []
    keys = ["report_type", "instrument", "variable", "vertical_kind", "known"]
    for (rt, ins, v, k, _), g in sub.groupby(keys, sort=True):
        out.append({"report_type": str(rt), "instrument": str(ins), "variable": str(v), "rows": int(len(g)),
                    "reason": _reason(str(v), str(k), str(ins), bg, g["vertical"].to_numpy())})
    return out
