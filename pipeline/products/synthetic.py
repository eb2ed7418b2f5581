"""A seeded synthetic forecast generator with realistic magnitudes, for tests, benchmarks and demos.

Yields state datasets in the fuxiops convention (initial state first, then
one lead time at a time). Fields are a climatological profile per variable and
level plus travelling planetary waves and a fixed noise bank, so they compress
and pack like real fields; generation is cheap enough for 0.25-degree runs.
It is not a model: it only exercises the product writers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterator

import numpy as np
import pandas as pd
import xarray as xr

from fuxiops.catalog import G0, VariableSet
from fuxiops.grids import Grid
from fuxiops.state import LAT, LEVEL, LON, coord_attrs, variable_attrs

from .base import RunMeta


def run_meta(grid: Grid, variables: VariableSet, reference_time: datetime, n_steps: int = 40,
             step_hours: int = 6, status: str = "complete") -> RunMeta:
    """Run metadata of a synthetic forecast (model provenance says so)."""
    return RunMeta(run_id=f"{reference_time:%Y%m%d%H}", reference_time=reference_time, grid=grid,
                   variables=variables, steps=tuple(range(0, (n_steps + 1) * step_hours, step_hours)),
                   model={"name": "synthetic", "version": "1", "note": "seeded synthetic fields, not a model"},
                   status=status)


class _Fields:
    def __init__(self, grid: Grid, seed: int) -> None:
        rng = np.random.default_rng(seed)
        lat = np.deg2rad(grid.latitudes)[:, None].astype(np.float32)
        lon = np.deg2rad(grid.longitudes)[None, :].astype(np.float32)
        self.coslat = np.cos(lat)
        self.sin2 = np.sin(lat) ** 2
        self.lon = lon
        self.lat = lat
        # A bank of smooth noise (sum of a few random waves) reused by rolling along longitude.
        bank = np.zeros(grid.shape, dtype=np.float32)
        for k in range(1, 6):
            phase = rng.uniform(0, 2 * np.pi)
            bank += (np.cos(k * lon + phase) * np.sin((k + 1) * lat + phase) / k).astype(np.float32)
        bank += 0.05 * rng.standard_normal(grid.shape).astype(np.float32)
        self.bank = bank
        self.rng = rng

    def wave(self, shift: int) -> np.ndarray:
        return np.roll(self.bank, shift, axis=1)


def _profile(name: str, level: int | None, f: _Fields) -> tuple[np.ndarray, float]:
    """Climatological field and wave amplitude for a variable/level."""
    if name in ("z", "t", "u") and level is None:
        raise ValueError(f"{name} needs a pressure level")
    lev = float(level or 0)
    if name == "z":
        h = 7000.0 * np.log(1013.25 / lev)  # scale-height estimate, metres
        return (G0 * (h - 400.0 * f.sin2 * (h / 8000.0))).astype(np.float32), 60.0 * G0
    if name == "t":
        h = 7000.0 * np.log(1013.25 / lev)
        t0 = max(288.0 - 6.5e-3 * h, 215.0)
        return (t0 - 25.0 * f.sin2 * (lev / 1000.0)).astype(np.float32), 4.0
    if name == "u":
        return (30.0 * np.sin(2 * f.lat) ** 2 * (1.0 - abs(lev - 250) / 1000.0)).astype(np.float32), 8.0
    if name == "v":
        return np.zeros_like(f.coslat), 6.0
    if name == "r":
        return (60.0 + 20.0 * f.coslat).astype(np.float32), 20.0
    if name == "t2m":
        return (300.0 - 45.0 * f.sin2).astype(np.float32), 5.0
    if name in ("u10", "v10"):
        return np.zeros_like(f.coslat), 5.0
    if name == "msl":
        return (101325.0 - 800.0 * np.cos(4 * f.lat)).astype(np.float32), 1200.0
    if name == "tp6":
        return np.zeros_like(f.coslat), 8.0
    raise KeyError(name)


def _field(name: str, level: int | None, f: _Fields, step_index: int, k: int) -> np.ndarray:
    base, amp = _profile(name, level, f)
    w = f.wave(step_index * 7 + k * 13)
    out = base + np.float32(amp) * w
    if name == "tp6":
        np.maximum(out - np.float32(2.0), 0.0, out=out)
    elif name == "r":
        np.clip(out, 0.0, 100.0, out=out)
    return out


def forecast(run: RunMeta, seed: int = 0) -> Iterator[xr.Dataset]:
    """Yield the run's steps: the initial state (no diagnostics), then each lead time."""
    f = _Fields(run.grid, seed)
    vs = run.variables
    ref = pd.Timestamp(run.reference_time).to_datetime64()
    ca = coord_attrs()
    for i, step in enumerate(run.steps):
        data: dict[str, xr.DataArray] = {}
        k = 0
        for name in vs.upper_air:
            arr = np.empty((len(vs.levels), *run.grid.shape), dtype=np.float32)
            for j, lev in enumerate(vs.levels):
                arr[j] = _field(name, lev, f, i, k)
                k += 1
            data[name] = xr.DataArray(arr, dims=(LEVEL, LAT, LON), attrs=variable_attrs(name))
        names = list(vs.surface) + (list(vs.diagnostics) if step > 0 else [])
        for name in names:
            data[name] = xr.DataArray(_field(name, None, f, i, k), dims=(LAT, LON), attrs=variable_attrs(name))
            k += 1
        coords = {LAT: (LAT, run.grid.latitudes, ca[LAT]), LON: (LON, run.grid.longitudes, ca[LON]),
                  "time": ref, "step": np.int64(step)}
        if vs.upper_air:
            coords[LEVEL] = (LEVEL, np.asarray(vs.levels, dtype=np.int64), ca[LEVEL])
        yield xr.Dataset(data, coords=coords)
