"""A tiny seeded world (reanalysis, NWP pool, gridded observations) for the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fuxiops.catalog import TESTBED
from fuxiops.grids import get_grid
from fuxiops.state import from_channels

GRID = get_grid("11.25deg")


def _state(times: pd.DatetimeIndex, seed: int, noise: float = 0.0) -> xr.Dataset:
    """Travelling waves on a climatological base: something a network can learn to step."""
    rng = np.random.default_rng(seed)
    chans = TESTBED.state_channels
    lat = np.deg2rad(GRID.latitudes)[:, None]
    lon = np.deg2rad(GRID.longitudes)[None, :]
    base = np.array([{"z": 5000.0 * 9.8, "t": 250.0, "u": 10.0, "v": 0.0}.get(c.variable.name, 0.0)
                     if c.variable.is_upper_air else {"t2m": 285.0, "msl": 101300.0}.get(c.variable.name, 0.0)
                     for c in chans], dtype=np.float32)
    amp = np.array([{"z": 800.0, "t": 8.0}.get(c.variable.name, 6.0) if c.variable.is_upper_air else
                    {"msl": 1500.0}.get(c.variable.name, 5.0) for c in chans], dtype=np.float32)
    arr = np.empty((len(times), len(chans), *GRID.shape), np.float32)
    for i, t in enumerate(times):
        phase = (t - times[0]) / pd.Timedelta("6h") * 0.3
        wave = np.cos(lat) * np.sin(3 * lon - phase) + 0.3 * np.sin(2 * lat) * np.cos(lon + 0.5 * phase)
        arr[i] = base[:, None, None] + amp[:, None, None] * wave[None]
    arr += noise * amp[None, :, None, None] * rng.standard_normal(arr.shape).astype(np.float32)
    return from_channels(arr, chans, GRID, leading={"time": times.values})


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world")
    times = pd.date_range("2023-01-01", periods=40, freq="6h")
    _state(times, 0, noise=0.01).to_zarr(root / "reanalysis.zarr")
    # NWP pool: inits every 12 h, leads 0..24 h, a noisier version of the same weather.
    inits = times[::2]
    steps = np.arange(0, 30, 6)
    nwp = []
    for s in steps:
        valid = inits + pd.Timedelta(hours=int(s))
        st = _state(valid, int(s) + 1, noise=0.02 + 0.01 * s / 6).assign_coords(time=inits.values)
        nwp.append(st)
    xr.concat(nwp, dim=xr.DataArray(steps, dims=["step"], name="step")).transpose("time", "step", ...) \
        .to_zarr(root / "nwp.zarr")
    # Gridded observations (as the ingest layer writes them): surface in-situ + a radiance group.
    rng = np.random.default_rng(5)
    rean = xr.open_zarr(root / "reanalysis.zarr")
    for kind, noise in (("raw", 0.5), ("sim", 0.3)):
        mask = (rng.random((len(times), *GRID.shape)) < 0.15).astype(np.float32)
        t2m = (rean.t2m.values - 285.0) / 5.0 + noise * rng.standard_normal(mask.shape) / 5.0
        msl = (rean.msl.values - 101300.0) / 1500.0
        surface = np.stack([t2m * mask, mask, msl * mask, mask], axis=1).astype(np.float32)
        radiance = rng.standard_normal((len(times), 3, *GRID.shape)).astype(np.float32) * 0.1
        ds = xr.Dataset({
            "surface": (("time", "surface_channel", "latitude", "longitude"), surface,
                        {"normalisation": '{"t2m": [285.0, 5.0], "msl": [101300.0, 1500.0]}'}),
            "radiance": (("time", "radiance_channel", "latitude", "longitude"), radiance)},
            coords={"time": times.values, "surface_channel": ["t2m", "t2m_mask", "msl", "msl_mask"],
                    "radiance_channel": ["bt1", "bt2", "bt3"], "latitude": GRID.latitudes,
                    "longitude": GRID.longitudes})
        ds.to_zarr(root / "training" / f"gridded_{kind}.zarr")
    return root
