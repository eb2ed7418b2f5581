"""Verification metrics agree with an independent implementation (xskillscore) on real ERA5 data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import xskillscore as xs

from fuxiops import metrics
from fuxiops.grids import latitude_weights


@pytest.fixture(scope="module")
def era5(real_data: Path) -> xr.Dataset:
    ds = xr.open_dataset(real_data / "grib" / "era5-levels-members.grib", engine="cfgrib",
                         backend_kwargs={"indexpath": ""})
    return ds.rename(isobaricInhPa="level").load()


def _xs_weights(ds: xr.Dataset) -> xr.DataArray:
    # Independent weights for xskillscore: WeatherBench 2's definition written out again.
    lat = np.deg2rad(ds.latitude.values[::-1])
    b = np.concatenate([[-np.pi / 2], (lat[1:] + lat[:-1]) / 2, [np.pi / 2]])
    w = (np.sin(b[1:]) - np.sin(b[:-1]))[::-1]
    w = w / w.mean()
    return xr.DataArray(w, dims=["latitude"], coords={"latitude": ds.latitude}).broadcast_like(ds.z.isel(
        number=0, time=0, level=0))


def test_weights_equal_independent_definition(era5: xr.Dataset) -> None:
    w = _xs_weights(era5).isel(longitude=0).values
    assert np.allclose(latitude_weights(era5.latitude.values), w, rtol=1e-12)


def test_rmse_bias_mae_match_xskillscore(era5: xr.Dataset) -> None:
    truth = era5.sel(number=0)
    forecast = era5.sel(number=slice(1, 9))
    w = _xs_weights(era5)
    ours_rmse = metrics.rmse(forecast, truth)
    ours_mae = metrics.mae(forecast, truth)
    ours_bias = metrics.bias(forecast, truth)
    for var in ("z", "t"):
        # WB2 RMSE: sqrt of the time mean of the weighted spatial MSE.
        ref_mse = xs.mse(forecast[var], truth[var], dim=["latitude", "longitude"], weights=w)
        ref_rmse = np.sqrt(ref_mse.mean("time"))
        ref_mae = xs.mae(forecast[var], truth[var], dim=["latitude", "longitude"], weights=w).mean("time")
        ref_bias = xs.me(forecast[var], truth[var], dim=["latitude", "longitude"], weights=w).mean("time")
        np.testing.assert_allclose(ours_rmse[var].values, ref_rmse.values, rtol=1e-6)
        np.testing.assert_allclose(ours_mae[var].values, ref_mae.values, rtol=1e-6)
        np.testing.assert_allclose(ours_bias[var].values, ref_bias.values, rtol=1e-6, atol=1e-6 * float(
            np.abs(ref_mae).max()))
        assert ours_rmse[var].dims == ("number", "level")
        assert float(ours_rmse[var].min()) > 0


def test_acc_matches_independent_uncentred_acc(era5: xr.Dataset) -> None:
    truth = era5.sel(number=0)
    forecast = era5.sel(number=slice(1, 9))
    clim = metrics.compute_climatology(era5.mean("number"))
    ours = metrics.acc(forecast, truth, clim)
    w = _xs_weights(era5)
    for var in ("z", "t"):
        c = metrics.climatology_for(truth["time"], clim[var]).drop_vars(["dayofyear", "hour"])
        fa, ta = forecast[var] - c, truth[var] - c
        # Uncentred ACC (WB2): sum(w f'o') / sqrt(sum(w f'^2) sum(w o'^2)).
        num = (w * fa * ta).sum(["latitude", "longitude"])
        den = np.sqrt((w * fa**2).sum(["latitude", "longitude"]) * (w * ta**2).sum(["latitude", "longitude"]))
        ref = (num / den).mean("time")
        np.testing.assert_allclose(ours[var].values, ref.values, rtol=1e-6)
        # Centred variant from xskillscore differs, but must be close for anomalies with ~zero mean.
        assert np.all(np.abs(ours[var].values) <= 1.0)


def test_perfect_forecast_scores(era5: xr.Dataset) -> None:
    truth = era5.sel(number=0)
    assert float(metrics.rmse(truth, truth)["t"].max()) == 0.0
    clim = metrics.compute_climatology(era5.mean("number"))
    np.testing.assert_allclose(metrics.acc(truth, truth, clim)["z"].values, 1.0, rtol=1e-6)


def test_scorecard_by_lead_and_alignment() -> None:
    times = pd.date_range("2020-01-01", periods=8, freq="6h")
    lat = np.linspace(90, -90, 9)
    lon = np.arange(0, 360, 45.0)
    rng = np.random.default_rng(0)
    truth = xr.Dataset({"t2m": (("time", "latitude", "longitude"), rng.normal(280, 5, (8, 9, 8)))},
                       coords={"time": times, "latitude": lat, "longitude": lon})
    steps = np.array([0, 6, 12], dtype="timedelta64[h]").astype("timedelta64[ns]")
    inits = times[:4]
    fc = np.stack([[truth.t2m.sel(time=t + s).values + 0.5 * k for k, s in enumerate(steps)] for t in inits])
    forecast = xr.Dataset({"t2m": (("time", "step", "latitude", "longitude"), fc)},
                          coords={"time": inits, "step": steps, "latitude": lat, "longitude": lon})
    f, t = metrics.align_forecast(forecast, truth)
    card = metrics.scorecard(f, t, metrics=("rmse", "bias"))
    np.testing.assert_allclose(card.t2m.sel(metric="rmse").values, [0.0, 0.5, 1.0], atol=1e-9)
    np.testing.assert_allclose(card.t2m.sel(metric="bias").values, [0.0, 0.5, 1.0], atol=1e-9)
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.scorecard(f, t, metrics=("crps",))
