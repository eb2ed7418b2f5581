"""Verification of a cycle: O-B / O-A departure statistics and, in the testbed, scores against the truth.

Model equivalents of observations are taken at the nearest grid cell and
interpolated linearly in log-pressure between the two bracketing model levels
(surface variables: nearest cell). Only observations that passed QC count.
Scores against the truth use :mod:`fuxiops.metrics` (WeatherBench 2 RMSE and
bias with latitude weights).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import xarray as xr

from fuxiops.grids import Grid
from fuxiops.state import LAT, LEVEL, LON


def model_equivalent(state: xr.Dataset, grid: Grid, variable: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                     pressure_pa: np.ndarray, vertical_kind: np.ndarray) -> np.ndarray:
    """H(x): the state's value at each observation (NaN where the state has no such variable/level)."""
    n = variable.size
    out = np.full(n, np.nan)
    if n == 0:
        return out
    ok = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90)
    ii = np.zeros(n, dtype=np.int64)
    jj = np.zeros(n, dtype=np.int64)
    if ok.any():
        ii[ok], jj[ok] = grid.nearest_index(lat[ok], lon[ok])
    for name in np.unique(variable):
        if name not in state.data_vars:
            continue
        sel = ok & (variable == name)
        da = state[name]
        extra = [d for d in da.dims if d not in (LEVEL, LAT, LON)]
        if extra:  # scalar-like leading dims (e.g. a length-1 time) are squeezed
            da = da.isel({d: 0 for d in extra})
        if LEVEL in da.dims:
            sel &= vertical_kind == "pressure"
            if not sel.any():
                continue
            levels = da[LEVEL].values.astype(np.float64) * 100.0  # hPa -> Pa
            order = np.argsort(levels)
            logp = np.log(levels[order])
            vals = np.asarray(da.transpose(LEVEL, LAT, LON).values, dtype=np.float64)[order]
            idx = np.flatnonzero(sel)
            p = pressure_pa[idx]
            inside = np.isfinite(p) & (p >= levels.min()) & (p <= levels.max())
            idx, p = idx[inside], p[inside]
            if idx.size == 0:
                continue
            lp = np.log(p)
            k = np.clip(np.searchsorted(logp, lp) - 1, 0, len(logp) - 2)
            w = (lp - logp[k]) / (logp[k + 1] - logp[k])
            lo = vals[k, ii[idx], jj[idx]]
            hi = vals[k + 1, ii[idx], jj[idx]]
            out[idx] = lo + w * (hi - lo)
        else:
            idx = np.flatnonzero(sel)
            vals = np.asarray(da.transpose(LAT, LON).values, dtype=np.float64)
            out[idx] = vals[ii[idx], jj[idx]]
    return out


def departure_stats(table: Any, background: xr.Dataset, analysis: xr.Dataset, grid: Grid,
                    used: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
    """O-B and O-A mean, std and count per ``report_type/variable`` for the used observations.

    ``table`` is an observation table (pyarrow or pandas, columns of the ingest
    layer's schema); ``used`` is a boolean mask of rows that passed QC.
    """
    df = table.to_pandas() if hasattr(table, "to_pandas") and not hasattr(table, "iloc") else table
    if len(df) == 0:
        return {}
    mask = np.ones(len(df), dtype=bool) if used is None else np.asarray(used, dtype=bool)
    df = df[mask]
    if len(df) == 0:
        return {}
    var = df["variable"].to_numpy(dtype=object)
    lat = df["latitude"].to_numpy(dtype=np.float64)
    lon = df["longitude"].to_numpy(dtype=np.float64)
    vert = df["vertical"].to_numpy(dtype=np.float64)
    kind = df["vertical_kind"].to_numpy(dtype=object)
    obs = df["value"].to_numpy(dtype=np.float64)
    hb = model_equivalent(background, grid, var, lat, lon, vert, kind)
    ha = model_equivalent(analysis, grid, var, lat, lon, vert, kind)
    keys = (df["report_type"].astype(str) + "/" + df["variable"].astype(str)).to_numpy()
    out: dict[str, dict[str, Any]] = {}
    for key in np.unique(keys):
        m = (keys == key) & np.isfinite(hb) & np.isfinite(ha) & np.isfinite(obs)
        if not m.any():
            continue
        omb = obs[m] - hb[m]
        oma = obs[m] - ha[m]
        out[str(key)] = {"count": int(m.sum()),
                         "omb_mean": float(omb.mean()), "omb_std": float(omb.std()),
                         "oma_mean": float(oma.mean()), "oma_std": float(oma.std())}
    return out


HEADLINE = ("z500", "t850", "t2m", "u10", "msl")


def _channel(ds: xr.Dataset, name: str) -> xr.DataArray | None:
    from fuxiops.catalog import parse_channel

    ch = parse_channel(name)
    if ch.variable.name not in ds.data_vars:
        return None
    da = ds[ch.variable.name]
    if ch.variable.is_upper_air:
        if LEVEL not in da.dims or ch.level not in set(int(x) for x in da[LEVEL].values):
            return None
        da = da.sel({LEVEL: ch.level})
    extra = [d for d in da.dims if d not in (LAT, LON)]
    return da.isel({d: 0 for d in extra}) if extra else da


def scores_vs_truth(state: xr.Dataset, truth: xr.Dataset, channels: Iterable[str] = HEADLINE) -> dict[str, dict[str, float]]:
    """Latitude-weighted RMSE and bias of one state against the truth at the same valid time."""
    from fuxiops.metrics import bias, rmse

    out: dict[str, dict[str, float]] = {}
    for name in channels:
        f, t = _channel(state, name), _channel(truth, name)
        if f is None or t is None:
            continue
        f = f.drop_vars([c for c in f.coords if c not in (LAT, LON)])
        t = t.drop_vars([c for c in t.coords if c not in (LAT, LON)])
        t = t.assign_coords({LAT: f[LAT], LON: f[LON]})
        out[name] = {"rmse": float(rmse(f, t, time_dim=None)), "bias": float(bias(f, t, time_dim=None))}
    return out
