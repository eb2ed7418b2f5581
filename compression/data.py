"""Training and calibration samples for compression: state time series as channel arrays.

A :class:`StateSeries` holds consecutive states ``(T, C, lat, lon)`` (physical
units, 6-hourly, channel order of the variable set) with their times, read
from a state store (the testbed world's reanalysis or truth Zarr, or any
dataset following the state convention), or made synthetically when no data
exists (travelling planetary waves on a balanced-looking background: smooth,
predictable and periodic in longitude, so a network can learn it).
:meth:`StateSeries.sampler` turns it into the deterministic-per-step batches
the distillation loop wants.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import xarray as xr

from fuxiops.catalog import VariableSet
from fuxiops.errors import DataError
from fuxiops.grids import Grid
from fuxiops.state import check_dataset, to_channels

TIME = "time"


@dataclass
class StateSeries:
    """Consecutive states one model step apart."""

    data: np.ndarray
    """(T, C, lat, lon) float32, physical units."""
    times: np.ndarray
    """(T,) datetime64[ns]."""
    variables: VariableSet
    grid: Grid
    step_hours: int = 6
    source: str = ""

    def __post_init__(self) -> None:
        if self.data.ndim != 4 or self.data.shape[0] != len(self.times):
            raise DataError(f"state series must be (time, channel, lat, lon) with one time per state, got "
                            f"{self.data.shape} and {len(self.times)} times")
        if self.data.shape[-2:] != self.grid.shape:
            raise DataError(f"state series is {self.data.shape[-2:]}, grid {self.grid.name} is {self.grid.shape}")
        if len(self.times) > 1:
            d = np.diff(self.times.astype("datetime64[h]").astype(np.int64))
            if np.any(d != self.step_hours):
                raise DataError(f"state series must be {self.step_hours}-hourly without gaps; found steps "
                                f"{sorted(set(d.tolist()))} h")

    def __len__(self) -> int:
        return len(self.times)

    def split(self, fraction: float) -> tuple["StateSeries", "StateSeries"]:
        """First ``fraction`` of the times and the rest (train / test, no overlap)."""
        n = int(round(len(self) * fraction))
        a = StateSeries(self.data[:n], self.times[:n], self.variables, self.grid, self.step_hours, self.source)
        b = StateSeries(self.data[n:], self.times[n:], self.variables, self.grid, self.step_hours, self.source)
        return a, b

    def window(self, i: int, n_inputs: int = 2) -> tuple[np.ndarray, np.datetime64]:
        """Inputs ``(n_inputs, C, H, W)`` ending at index ``i`` and the time of index ``i``."""
        return self.data[i - n_inputs + 1:i + 1], self.times[i]

    def valid_starts(self, n_inputs: int = 2, lead_steps: int = 1) -> np.ndarray:
        return np.arange(n_inputs - 1, len(self) - lead_steps)

    def sampler(self, batch: int, seed: int = 0, n_inputs: int = 2
                ) -> Callable[[int], tuple[Sequence[torch.Tensor], torch.Tensor]]:
        """``sample(step) -> ((x, clock), label)``; the batch of a step depends only on (seed, step)."""
        from fuxiops.models.features import clock_features

        starts = self.valid_starts(n_inputs)
        if len(starts) == 0:
            raise DataError(f"state series of {len(self)} times is too short for {n_inputs} inputs and a label")

        def sample(step: int) -> tuple[Sequence[torch.Tensor], torch.Tensor]:
            rng = np.random.default_rng([seed, step])
            idx = rng.choice(starts, size=batch, replace=len(starts) < batch)
            x = np.stack([self.data[i - n_inputs + 1:i + 1] for i in idx])
            y = np.stack([self.data[i + 1] for i in idx])
            target = self.times[idx] + np.timedelta64(self.step_hours, "h")
            clock = np.stack([clock_features(t) for t in target])
            return (torch.from_numpy(x), torch.from_numpy(clock)), torch.from_numpy(y)

        return sample


def load_series(path: str | os.PathLike[str], variables: VariableSet, grid: Grid, start: str | None = None,
                end: str | None = None, step_hours: int = 6) -> StateSeries:
    """Read a state store (Zarr or NetCDF with a ``time`` dim) into memory as a series."""
    p = str(path)
    try:
        ds = xr.open_zarr(p) if p.rstrip("/").endswith(".zarr") else xr.open_dataset(p)
    except Exception as e:
        raise DataError(f"cannot open state store {p}: {e}") from None
    check_dataset(ds, variables, grid, p)
    if TIME not in ds.dims:
        raise DataError(f"state store {p} has no 'time' dimension (dims: {dict(ds.sizes)})")
    if start or end:
        ds = ds.sel({TIME: slice(start, end)})
    data = to_channels(ds, variables.state_channels)
    if data.shape[0] != ds.sizes[TIME] or data.ndim != 4:
        raise DataError(f"state store {p} has extra dimensions besides time/level/lat/lon: {dict(ds.sizes)}")
    if not np.all(np.isfinite(data)):
        raise DataError(f"state store {p} has non-finite values")
    return StateSeries(data.astype(np.float32), ds[TIME].values.astype("datetime64[ns]"), variables, grid,
                       step_hours, source=p)


#: Rough climatological means / spreads per variable (and per level for upper air) of the synthetic world.
def _scales(name: str, level: int | None) -> tuple[float, float]:
    lv = float(level or 1000)
    if name == "z":
        return 9.81 * 7000.0 * np.log(1000.0 / lv) + 500.0, 300.0 + 0.3 * (1000.0 - lv) * 9.81 / 9.81
    if name == "t":
        return 288.0 - 60.0 * np.log(1000.0 / lv) / np.log(10.0), 8.0
    if name in ("u", "u10"):
        return 8.0 if name == "u" else 2.0, 10.0 if name == "u" else 4.0
    if name in ("v", "v10"):
        return 0.0, 6.0 if name == "v" else 3.0
    if name == "r":
        return 60.0, 20.0
    if name == "t2m":
        return 285.0, 12.0
    if name == "msl":
        return 101_300.0, 900.0
    return 0.0, 1.0


def synthetic_series(variables: VariableSet, grid: Grid, n_times: int, seed: int = 0, step_hours: int = 6,
                     start: str = "2023-01-01T00") -> StateSeries:
    """Travelling zonal waves (wavenumbers 1-6, periods of days) with latitude envelopes and a diurnal
    cycle in T2M: deterministic, smooth, learnable; every channel mixes the same few waves."""
    rng = np.random.default_rng(seed)
    lat = np.deg2rad(grid.latitudes)[:, None]
    lon = np.deg2rad(grid.longitudes)[None, :]
    chans = variables.state_channels
    n_waves = 6
    k = rng.integers(1, 7, size=n_waves)
    speed = rng.uniform(-0.6, 0.9, size=n_waves)  # radians of longitude per day
    centre = rng.uniform(-1.0, 1.0, size=n_waves)
    width = rng.uniform(0.3, 0.7, size=n_waves)
    grow = rng.uniform(0.02, 0.08, size=n_waves)  # slow amplitude oscillation (rad/day)
    mix = rng.normal(size=(len(chans), n_waves))
    times = np.datetime64(start, "ns") + np.arange(n_times) * np.timedelta64(step_hours, "h")
    out = np.empty((n_times, len(chans), *grid.shape), np.float32)
    envelope = np.exp(-((lat - centre[:, None, None]) / width[:, None, None]) ** 2)  # (W, lat, 1)
    base_lat = np.cos(lat) ** 2
    for ti in range(n_times):
        days = ti * step_hours / 24.0
        phase = k[:, None, None] * lon[None] - speed[:, None, None] * days * k[:, None, None]
        amp = 1.0 + 0.5 * np.sin(grow * days)[:, None, None]
        waves = amp * envelope * np.cos(phase)  # (W, lat, lon)
        hour = (ti * step_hours) % 24
        for ci, ch in enumerate(chans):
            mean, spread = _scales(ch.variable.name, ch.level)
            field = np.tensordot(mix[ci], waves, axes=1) / np.sqrt(n_waves)
            field = field + 0.8 * (base_lat - 0.5)
            if ch.variable.name == "t2m":  # diurnal cycle following the sun
                field = field + 0.5 * np.cos(lon + 2 * np.pi * hour / 24.0) * np.cos(lat)
            out[ti, ci] = mean + spread * field
    return StateSeries(out, times, variables, grid, step_hours, source=f"synthetic(seed={seed})")
