"""Verification metrics on xarray objects, following WeatherBench 2 conventions.

Spatial averages use cell-area latitude weights (mean 1). RMSE is the square
root of the *time-mean* of the weighted spatial MSE (not the mean of per-time
RMSEs); ACC is computed per time on anomalies from a climatology indexed by
day-of-year and hour, then averaged over time. Every metric reduces the
spatial dims and the ``time_dim`` and keeps everything else (lead time,
variable, level), so ``rmse(forecast, truth)`` on a (time, step, lat, lon)
dataset gives one number per step and variable.
"""

from __future__ import annotations

from typing import Callable, Hashable, Iterable

import numpy as np
import xarray as xr

from fuxiops.grids import latitude_weights

LAT = "latitude"
LON = "longitude"
SPATIAL = (LAT, LON)

XType = xr.Dataset | xr.DataArray


def lat_weights(obj: XType) -> xr.DataArray:
    """WeatherBench 2 latitude weights for ``obj``'s latitude coordinate."""
    return xr.DataArray(latitude_weights(obj[LAT].values), dims=[LAT], coords={LAT: obj[LAT]})


def _spatial_mean(x: XType, weights: xr.DataArray) -> XType:
    # Weights are normalised to mean 1 over latitude, so a weighted mean is mean(x * w).
    return (x * weights).mean(SPATIAL)


def _time_mean(x: XType, time_dim: str | None) -> XType:
    if time_dim is not None and time_dim in x.dims:
        return x.mean(time_dim)
    return x


def mse(forecast: XType, truth: XType, time_dim: str | None = "time") -> XType:
    """Time-mean of the latitude-weighted spatial mean squared error."""
    w = lat_weights(truth)
    return _time_mean(_spatial_mean((forecast - truth) ** 2, w), time_dim)


def rmse(forecast: XType, truth: XType, time_dim: str | None = "time") -> XType:
    """sqrt(time-mean(weighted spatial MSE)), WeatherBench 2's RMSE."""
    return np.sqrt(mse(forecast, truth, time_dim))


def bias(forecast: XType, truth: XType, time_dim: str | None = "time") -> XType:
    """Time-mean of the latitude-weighted spatial mean error (forecast - truth)."""
    w = lat_weights(truth)
    return _time_mean(_spatial_mean(forecast - truth, w), time_dim)


def mae(forecast: XType, truth: XType, time_dim: str | None = "time") -> XType:
    """Time-mean of the latitude-weighted spatial mean absolute error."""
    w = lat_weights(truth)
    return _time_mean(_spatial_mean(abs(forecast - truth), w), time_dim)


def climatology_for(valid_time: xr.DataArray, climatology: XType) -> XType:
    """Select climatology (dims ``dayofyear``, ``hour``) at each valid time."""
    vt = valid_time.dt
    return climatology.sel(dayofyear=vt.dayofyear, hour=vt.hour)


def acc(forecast: XType, truth: XType, climatology: XType, time_dim: str | None = "time",
        valid_time: xr.DataArray | None = None) -> XType:
    """Anomaly correlation coefficient, per time then averaged (WeatherBench 2).

    ``climatology`` has dims (dayofyear, hour, latitude, longitude[, level]);
    ``valid_time`` defaults to the ``valid_time`` coordinate of ``truth``, or
    its ``time_dim`` coordinate.
    """
    if valid_time is None:
        valid_time = truth["valid_time"] if "valid_time" in truth.coords else truth[time_dim]
    clim = climatology_for(valid_time, climatology)
    clim = clim.drop_vars([c for c in ("dayofyear", "hour") if c in clim.coords])
    fa = forecast - clim
    ta = truth - clim
    w = lat_weights(truth)
    num = _spatial_mean(fa * ta, w)
    den = np.sqrt(_spatial_mean(fa**2, w) * _spatial_mean(ta**2, w))
    return _time_mean(num / den, time_dim)


def compute_climatology(ds: XType, time_dim: str = "time") -> XType:
    """Mean by (day-of-year, hour) of a time series, the anomaly reference for ACC.

    Days of year with no data are filled from the nearest day present (cyclic),
    so any valid time can be looked up.
    """
    t = ds[time_dim]
    keyed = ds.assign_coords(dayofyear=t.dt.dayofyear, hour=t.dt.hour)
    pieces = []
    hours = np.unique(keyed["hour"].values)
    for h in hours:
        sub = keyed.where(keyed["hour"] == h, drop=True)
        daily = sub.groupby("dayofyear").mean(time_dim)
        # Fill missing days cyclically from the nearest available day.
        present = daily["dayofyear"].values
        idx = np.arange(1, 367)
        dist = np.abs(idx[:, None] - present[None, :])
        dist = np.minimum(dist, 366 - dist)
        nearest = present[np.argmin(dist, axis=1)]
        full = daily.sel(dayofyear=nearest).assign_coords(dayofyear=idx)
        pieces.append(full.expand_dims(hour=[int(h)]))
    return xr.concat(pieces, dim="hour").transpose("dayofyear", "hour", ...)


METRICS: dict[str, Callable[..., XType]] = {"rmse": rmse, "bias": bias, "mae": mae}


def scorecard(forecast: xr.Dataset, truth: xr.Dataset, metrics: Iterable[str] = ("rmse", "bias", "mae"),
              climatology: xr.Dataset | None = None, time_dim: str = "time") -> xr.Dataset:
    """All requested metrics as one Dataset with a ``metric`` dimension.

    ``forecast`` and ``truth`` must already be aligned (same valid times along
    ``time_dim`` for each lead); ``acc`` needs ``climatology``.
    """
    out: dict[Hashable, XType] = {}
    for m in metrics:
        if m == "acc":
            if climatology is None:
                raise ValueError("acc needs a climatology")
            out[m] = acc(forecast, truth, climatology, time_dim)
        elif m in METRICS:
            out[m] = METRICS[m](forecast, truth, time_dim)
        else:
            raise ValueError(f"unknown metric {m!r}; allowed: {', '.join([*METRICS, 'acc'])}")
    return xr.concat(list(out.values()), dim=xr.DataArray(list(out), dims=["metric"]))


def align_forecast(forecast: xr.Dataset, truth: xr.Dataset, init_dim: str = "time",
                   lead_dim: str = "step") -> tuple[xr.Dataset, xr.Dataset]:
    """Pair a (init time, lead) forecast with the truth at each valid time.

    Returns the forecast and a truth array of the same shape; init times whose
    valid times are missing from the truth are dropped.
    """
    lead = forecast[lead_dim]
    lead_td = lead if np.issubdtype(lead.dtype, np.timedelta64) else lead.astype("timedelta64[h]")
    valid = forecast[init_dim] + lead_td
    ok = valid.isin(truth[init_dim].values).all(lead_dim)
    forecast = forecast.sel({init_dim: ok})
    valid = valid.sel({init_dim: ok})
    common = [v for v in forecast.data_vars if v in truth.data_vars]
    t = truth[common].sel({init_dim: valid}).drop_vars(init_dim, errors="ignore")
    t = t.assign_coords({init_dim: forecast[init_dim], lead_dim: forecast[lead_dim]})
    return forecast[common], t.assign_coords(valid_time=valid)
