"""A seeded synthetic training world (no dynamical core): for tests and throughput measurements.

Travelling waves on a climatological base give states a network can learn to
step; the NWP pool is a noisier copy of the same weather and the gridded
observations follow the ingest layer's layout. The real testbed world is
built by ``fuxiops world build``; this one only exercises the training code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fuxiops.catalog import TESTBED, VariableSet
from fuxiops.grids import Grid
from fuxiops.state import from_channels

_BASE = {"z": 5000.0 * 9.8, "t": 250.0, "u": 10.0, "v": 0.0, "t2m": 285.0, "msl": 101300.0}
_AMP = {"z": 800.0, "t": 8.0, "msl": 1500.0}


def synthetic_states(times: pd.DatetimeIndex, grid: Grid, seed: int, noise: float = 0.0,
                     variables: VariableSet = TESTBED) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    chans = variables.state_channels
    lat = np.deg2rad(grid.latitudes)[:, None]
    lon = np.deg2rad(grid.longitudes)[None, :]
    base = np.array([_BASE.get(c.variable.name, 0.0) for c in chans], dtype=np.float32)
    amp = np.array([_AMP.get(c.variable.name, 6.0 if c.variable.is_upper_air else 5.0) for c in chans],
                   dtype=np.float32)
    arr = np.empty((len(times), len(chans), *grid.shape), np.float32)
    for i, t in enumerate(times):
        phase = (t - times[0]) / pd.Timedelta("6h") * 0.3
        wave = np.cos(lat) * np.sin(3 * lon - phase) + 0.3 * np.sin(2 * lat) * np.cos(lon + 0.5 * phase)
        arr[i] = base[:, None, None] + amp[:, None, None] * wave[None]
    arr += noise * amp[None, :, None, None] * rng.standard_normal(arr.shape).astype(np.float32)
    return from_channels(arr, chans, grid, leading={"time": times.values})


def build_synthetic_world(root: Path, grid: Grid, n_times: int = 40, start: str = "2023-01-01",
                          seed: int = 0) -> Path:
    """reanalysis.zarr, nwp.zarr (inits every 12 h, leads 0-24 h) and training/gridded_{raw,sim}.zarr."""
    times = pd.date_range(start, periods=n_times, freq="6h")
    synthetic_states(times, grid, seed, noise=0.01).to_zarr(root / "reanalysis.zarr", mode="w")
    inits = times[::2]
    steps = np.arange(0, 30, 6)
    nwp = [synthetic_states(inits + pd.Timedelta(hours=int(s)), grid, seed + int(s) + 1,
                            noise=0.02 + 0.01 * s / 6).assign_coords(time=inits.values) for s in steps]
    xr.concat(nwp, dim=xr.DataArray(steps, dims=["step"], name="step")).transpose("time", "step", ...) \
        .to_zarr(root / "nwp.zarr", mode="w")
    rng = np.random.default_rng(seed + 5)
    rean = xr.open_zarr(root / "reanalysis.zarr")
    norm = json.dumps({"t2m": [285.0, 5.0], "msl": [101300.0, 1500.0]})
    for kind, noise in (("raw", 0.5), ("sim", 0.3)):
        mask = (rng.random((n_times, *grid.shape)) < 0.15).astype(np.float32)
        t2m = (rean.t2m.values - 285.0) / 5.0 + noise * rng.standard_normal(mask.shape) / 5.0
        msl = (rean.msl.values - 101300.0) / 1500.0
        surface = np.stack([t2m * mask, mask, msl * mask, mask], axis=1).astype(np.float32)
        radiance = rng.standard_normal((n_times, 3, *grid.shape)).astype(np.float32) * 0.1
        ds = xr.Dataset({
            "surface": (("time", "surface_channel", "latitude", "longitude"), surface, {"normalisation": norm}),
            "radiance": (("time", "radiance_channel", "latitude", "longitude"), radiance)},
            coords={"time": times.values, "surface_channel": ["t2m", "t2m_mask", "msl", "msl_mask"],
                    "radiance_channel": ["bt1", "bt2", "bt3"], "latitude": grid.latitudes,
                    "longitude": grid.longitudes})
        ds.to_zarr(root / "training" / f"gridded_{kind}.zarr", mode="w")
    return root
