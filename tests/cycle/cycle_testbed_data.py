"""Seeded synthetic testbed data for the cycle tests: a tiny deployment, reanalysis/truth stores, station CSVs.

Smooth, physically plausible fields (zonal-mean temperature and geopotential by
level, westerly jets, travelling waves) on a coarse grid, 6-hourly, written in
the testbed world's layout (``{world}/reanalysis.zarr``, ``{world}/truth.zarr``)
so the cycle cold-starts and verifies exactly as on a built world.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import yaml

from fuxiops.catalog import VariableSet
from fuxiops.grids import Grid, get_grid
from fuxiops.state import from_channels

GRID = "11.25deg"
LEVELS = [250, 500, 850]
VARIABLES = {"preset": "custom", "upper_air": ["z", "t", "u", "v"], "levels": LEVELS,
             "surface": ["t2m", "u10", "v10", "msl"], "diagnostics": []}
START = datetime(2023, 1, 1, 0)


def variable_set() -> VariableSet:
    return VariableSet(tuple(VARIABLES["upper_air"]), tuple(LEVELS), tuple(VARIABLES["surface"]), ())


def fields(grid: Grid, t: datetime, seed: int, noise: float = 0.0) -> np.ndarray:
    """``(C, lat, lon)`` state at ``t`` (channel order of :func:`variable_set`)."""
    lat = np.deg2rad(grid.latitudes)[:, None]
    lon = np.deg2rad(grid.longitudes)[None, :]
    hours = (t - START).total_seconds() / 3600.0
    phase = lon - 2 * np.pi * hours / 96.0  # waves travel east, 4 days per revolution
    rng = np.random.default_rng([seed, int(hours)])
    wave = np.cos(3 * phase) * np.cos(lat) ** 2
    out = []
    t_ref = {250: 225.0, 500: 255.0, 850: 280.0}
    z_ref = {250: 10400.0 * 9.80665, 500: 5600.0 * 9.80665, 850: 1450.0 * 9.80665}
    for var in ("z", "t", "u", "v"):
        for lev in LEVELS:
            if var == "z":
                f = z_ref[lev] - 3000.0 * np.sin(lat) ** 2 + 800.0 * wave
            elif var == "t":
                f = t_ref[lev] + 25.0 * (np.cos(lat) ** 2 - 0.5) + 3.0 * wave
            elif var == "u":
                f = (30.0 if lev == 250 else 12.0) * np.sin(2 * lat) ** 2 + 4.0 * wave
            else:
                f = 6.0 * np.sin(3 * phase) * np.cos(lat)
            out.append(f + np.zeros_like(lon))
    out.append(288.0 - 40.0 * np.sin(lat) ** 2 + 2.0 * wave + np.zeros_like(lon))  # t2m
    out.append(5.0 * np.sin(2 * lat) ** 2 + 2.0 * wave + np.zeros_like(lon))  # u10
    out.append(3.0 * np.sin(3 * phase) * np.cos(lat) + np.zeros_like(lon))  # v10
    out.append(101325.0 - 800.0 * wave + np.zeros_like(lon))  # msl
    arr = np.stack(out).astype(np.float32)
    if noise:
        scale = arr.std(axis=(1, 2), keepdims=True) * noise + 1e-3
        arr = arr + (rng.standard_normal(arr.shape) * scale).astype(np.float32)
    return arr


def write_store(path: Path, grid: Grid, times: list[datetime], seed: int, noise: float) -> None:
    arr = np.stack([fields(grid, t, seed, noise) for t in times])
    ds = from_channels(arr, variable_set().state_channels, grid,
                       leading={"time": np.array([np.datetime64(t, "ns") for t in times])})
    ds.to_zarr(path, mode="w", consolidated=True, zarr_format=2)


def make_home(home: Path, *, days: float = 2.0, steps: int = 4, extra: dict[str, Any] | None = None) -> Path:
    """A deployment under ``home``: config YAML, world reanalysis and truth. Returns the config path."""
    grid = get_grid(GRID)
    n = int(days * 4) + 1
    times = [START + timedelta(hours=6 * k) for k in range(n)]
    world = home / "world"
    world.mkdir(parents=True, exist_ok=True)
    write_store(world / "truth.zarr", grid, times, seed=1, noise=0.0)
    write_store(world / "reanalysis.zarr", grid, times, seed=2, noise=0.02)
    cfg = {
        "home": str(home), "grid": GRID, "variables": VARIABLES,
        "models": {"device": "cpu"},
        "schedule": {"forecast_steps": steps},
        "observations": {"sources": [{"name": "stations", "reader": "csv", "pattern": "*.csv"}]},
        "outputs": {"formats": ["grib2", "netcdf", "zarr"]},
        "dask": {"n_workers": 1},
    }
    if extra:
        for k, v in extra.items():
            cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    path = home / "fuxiops.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def station_csv(path: Path, cycle_time: datetime, n: int = 60, seed: int = 0, bad_rows: int = 0) -> None:
    """Surface stations observing the truth (+ noise) at the cycle time; ``bad_rows`` get impossible values."""
    grid = get_grid(GRID)
    rng = np.random.default_rng(seed)
    lat = rng.uniform(-80, 80, n)
    lon = rng.uniform(0, 360, n)
    truth = fields(grid, cycle_time, seed=1)
    ii, jj = grid.nearest_index(lat, lon)
    c = len(LEVELS) * 4
    t2m = truth[c, ii, jj] + rng.normal(0, 0.5, n)
    msl = truth[c + 3, ii, jj] + rng.normal(0, 50.0, n)
    if bad_rows:
        t2m[:bad_rows] = 900.0  # outside physical bounds: QC rejects, the rest is used
    df = pd.DataFrame({"station_id": [f"S{k:04d}" for k in range(n)],
                       "time": pd.Timestamp(cycle_time).strftime("%Y-%m-%dT%H:%M:%S"),
                       "latitude": lat, "longitude": lon, "t2m": t2m, "msl": msl})
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)


def open_state(path: Path) -> xr.Dataset:
    return xr.open_zarr(path)
