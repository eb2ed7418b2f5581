"""Assimilator: missing observation groups are masked exactly; inputs are checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from fuxiops.errors import DataError
from fuxiops.grids import Grid
from fuxiops.models.torch_assimilator import TorchAssimilator

from .conftest import SMALL_VARS

GROUPS = {"synop": 3, "temp": 5}


def _obs(grid: Grid, groups: dict[str, int], seed: int = 1) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    return xr.Dataset({g: ((f"{g}_channel", "latitude", "longitude"), rng.standard_normal((n, *grid.shape))
                           .astype(np.float32)) for g, n in groups.items()},
                      coords={"latitude": grid.latitudes, "longitude": grid.longitudes})


@pytest.fixture
def asm(grid11) -> TorchAssimilator:
    return TorchAssimilator.build("tiny", SMALL_VARS, grid11, GROUPS, seed=0)


def test_analysis_changes_background_and_uses_observations(asm, grid11, states11) -> None:
    bg = states11.isel(time=1)
    t = bg.time.values
    a_all = asm.analyse(bg, _obs(grid11, GROUPS), t)
    a_none = asm.analyse(bg, None, t)
    assert a_all.time.values == t and a_all["t"].dims == ("level", "latitude", "longitude")
    assert not np.array_equal(a_all["t"].values, a_none["t"].values)
    assert not np.array_equal(a_none["t"].values, bg["t"].values)  # an increment is added
    assert a_all.attrs["observation_groups_used"] == "synop,temp"


def test_missing_group_equals_masked_group(asm, grid11, states11) -> None:
    """A group absent from the dataset and a group present with flag 0 (any values) give the same analysis."""
    bg = states11.isel(time=1)
    t = bg.time.values
    x = asm.background_array(bg, t)
    only_synop = asm.analyse(bg, _obs(grid11, {"synop": 3}), t)
    garbage = np.full((5, *grid11.shape), 1e3, np.float32)
    obs = _obs(grid11, {"synop": 3})
    arrays = {"synop": obs["synop"].values, "temp": None}
    via_arrays = asm.analyse_arrays(x, arrays, t)
    np.testing.assert_array_equal(only_synop["t"].values, from_state(via_arrays, asm, "t"))
    # Garbage in a masked group must not leak: drive the module directly with flag 0.
    m = asm.module
    tens = {"synop": torch.from_numpy(arrays["synop"])[None], "temp": torch.from_numpy(garbage)[None]}
    from fuxiops.models.features import clock_features
    with torch.no_grad():
        out = m(torch.from_numpy(x)[None], tens, torch.tensor([[1.0, 0.0]]), torch.from_numpy(clock_features(t))[None])
    np.testing.assert_array_equal(out[0].numpy(), via_arrays)


def from_state(arr: np.ndarray, asm: TorchAssimilator, name: str) -> np.ndarray:
    idx = [i for i, c in enumerate(asm.coords.variables.state_channels) if c.variable.name == name]
    return arr[idx]


def test_all_groups_masked_is_the_background_only_path(asm, grid11, states11) -> None:
    """With no observations the analysis equals a network that has no observation branches at all."""
    bg = states11.isel(time=1)
    t = bg.time.values
    bare = TorchAssimilator.build("tiny", SMALL_VARS, grid11, {}, seed=5)
    shared = {k: v for k, v in asm.module.state_dict().items() if not k.startswith("net.obs.")}
    bare.module.load_state_dict(shared, strict=True)
    np.testing.assert_array_equal(asm.analyse(bg, None, t)["t"].values, bare.analyse(bg, None, t)["t"].values)
    np.testing.assert_array_equal(asm.analyse(bg, xr.Dataset(), t)["z"].values, bare.analyse(bg, None, t)["z"].values)


def test_observation_and_background_errors_are_named(asm, grid11, grid5, states11) -> None:
    bg = states11.isel(time=1)
    t = bg.time.values
    with pytest.raises(DataError, match="'temp' has 4 channels"):
        asm.analyse(bg, _obs(grid11, {"temp": 4}), t)
    with pytest.raises(Exception, match="grid"):
        asm.analyse(bg, _obs(grid5, {"temp": 5}), t)
    with pytest.raises(DataError, match="has no state at"):
        asm.analyse(states11, None, np.datetime64("2030-01-01"))
    wrong_dims = xr.Dataset({"synop": (("c", "latitude", "longitude"), np.zeros((3, *grid11.shape), np.float32))},
                            coords={"latitude": grid11.latitudes, "longitude": grid11.longitudes})
    with pytest.raises(DataError, match="synop_channel"):
        asm.analyse(bg, wrong_dims, t)
