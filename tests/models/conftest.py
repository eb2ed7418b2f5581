"""Fixtures of the model tests: seeded synthetic states on tiny grids."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from fuxiops.catalog import TESTBED, VariableSet
from fuxiops.grids import Grid, get_grid
from fuxiops.state import from_channels

#: A small variable set keeps the tiny networks fast: 2 upper-air variables on 3 levels + 2 surface.
SMALL_VARS = VariableSet(upper_air=("z", "t"), levels=(250, 500, 850), surface=("t2m", "msl"), diagnostics=())


def synthetic_states(grid: Grid, variables: VariableSet = TESTBED, n_times: int = 4, seed: int = 0,
                     start: str = "2023-01-01T00") -> xr.Dataset:
    """Seeded states 6 h apart with realistic magnitudes (a mean per channel plus noise)."""
    rng = np.random.default_rng(seed)
    times = (np.datetime64(start, "ns") + np.arange(n_times) * np.timedelta64(6, "h")).astype("datetime64[ns]")
    n = len(variables.state_channels)
    base = np.linspace(200.0, 1000.0, n, dtype=np.float32)[None, :, None, None]
    arr = (base + 5.0 * rng.standard_normal((n_times, n, *grid.shape))).astype(np.float32)
    return from_channels(arr, variables.state_channels, grid, leading={"time": times})


@pytest.fixture
def grid11() -> Grid:
    return get_grid("11.25deg")


@pytest.fixture
def grid5() -> Grid:
    return get_grid("5.625deg")


@pytest.fixture
def states11(grid11: Grid) -> xr.Dataset:
    return synthetic_states(grid11, SMALL_VARS)
