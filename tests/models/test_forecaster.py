"""Forecaster interface, network properties (periodic longitude, determinism) and rollout behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fuxiops.errors import DataError, FuxiopsError, GridError
from fuxiops.grids import get_grid
from fuxiops.models.base import Forecaster, ModelCoords
from fuxiops.models.forecaster_net import ForecastModule
from fuxiops.models.normalisation import compute_stats
from fuxiops.models.presets import ForecasterArch, get_preset
from fuxiops.models.torch_forecaster import TorchForecaster

from .conftest import SMALL_VARS, synthetic_states


def _module(arch: ForecasterArch, grid_name: str, seed: int = 0) -> tuple[ForecastModule, torch.Tensor]:
    g = get_grid(grid_name)
    torch.manual_seed(seed)
    static = torch.randn(6, *g.shape)
    return ForecastModule(arch, 10, 1, static), static


@pytest.mark.parametrize("grid_name", ["11.25deg", "5.625deg"])
@pytest.mark.parametrize("lat_mode", ["interp", "pad"])
def test_longitude_roll_by_window_multiple_rolls_output(grid_name: str, lat_mode: str) -> None:
    from dataclasses import replace
    arch = replace(get_preset("tiny").forecaster, lat_mode=lat_mode)
    m, static = _module(arch, grid_name)
    g = get_grid(grid_name)
    x = torch.randn(1, 2, 10, *g.shape)
    clock = torch.randn(1, 4)
    k = arch.lon_multiple  # one window at the Swin level, in grid columns
    with torch.no_grad():
        y = m(x, clock)
        m.static.copy_(torch.roll(static, k, -1))  # static fields are part of the input: roll them too
        y_rolled = m(torch.roll(x, k, -1), clock)
    assert torch.allclose(torch.roll(y, k, -1), y_rolled, atol=1e-4, rtol=1e-4)
    # Not trivially invariant: the output does change when the input is rolled.
    assert not torch.allclose(y, y_rolled, atol=1e-3)


def test_depth_two_has_a_shifted_block() -> None:
    m, _ = _module(get_preset("tiny").forecaster, "11.25deg")
    assert [b.shift for b in m.net.blocks] == [False, True]


def test_seeded_forward_is_deterministic(grid11, states11) -> None:
    a = TorchForecaster.build("tiny", SMALL_VARS, grid11, seed=3)
    b = TorchForecaster.build("tiny", SMALL_VARS, grid11, seed=3)
    c = TorchForecaster.build("tiny", SMALL_VARS, grid11, seed=4)
    from fuxiops.state import to_channels
    x = to_channels(states11.isel(time=slice(0, 2)), SMALL_VARS.state_channels)
    t = states11.time.values[1]
    ya, ya2, yb, yc = a.step(x, t), a.step(x, t), b.step(x, t), c.step(x, t)
    assert np.array_equal(ya, ya2) and np.array_equal(ya, yb)
    assert not np.array_equal(ya, yc)


def test_rollout_yields_initial_then_each_lead(grid11, states11) -> None:
    fc = TorchForecaster.build("tiny", SMALL_VARS, grid11, norm=compute_stats(states11, SMALL_VARS, grid11))
    t0 = states11.time.values[1]
    states = list(fc.rollout(states11, 3, time=t0))
    assert [int(s.step) for s in states] == [0, 6, 12, 18]
    assert all(s.time.values == t0 for s in states)
    assert [s.valid_time.values for s in states] == [t0 + np.timedelta64(6 * k, "h") for k in range(4)]
    np.testing.assert_array_equal(states[0]["t"].values, states11.sel(time=t0)["t"].values)
    assert all(np.isfinite(s["t"].values).all() for s in states)
    assert states[1]["t"].dims == ("level", "latitude", "longitude")
    # Variables and levels the model does not read (with gaps) are ignored, not errors.
    extra = states11.assign(r=states11["t"] * np.nan)
    extra = extra.reindex(level=[100, 250, 500, 850])  # level 100: all NaN
    again = list(fc.rollout(extra, 1, time=t0))
    np.testing.assert_array_equal(again[1]["t"].values, states[1]["t"].values)
    assert "r" not in again[1]


class _Counting(Forecaster):
    """A forecaster wrapper (same interface) counting steps: shows rollout is lazy."""

    def __init__(self, inner: Forecaster) -> None:
        self.inner, self.calls = inner, 0

    @property
    def coords(self) -> ModelCoords:
        return self.inner.coords

    def step(self, inputs: np.ndarray, time: np.datetime64) -> np.ndarray:
        self.calls += 1
        return self.inner.step(inputs, time)


def test_rollout_is_a_lazy_generator(grid11, states11) -> None:
    fc = _Counting(TorchForecaster.build("tiny", SMALL_VARS, grid11))
    gen = fc.rollout(states11, 40)
    next(gen)
    assert fc.calls == 0
    next(gen)
    next(gen)
    assert fc.calls == 2


def test_input_coordinate_mismatches_are_named(grid11, grid5, states11) -> None:
    fc = TorchForecaster.build("tiny", SMALL_VARS, grid11)
    with pytest.raises(GridError, match="11.25deg"):
        next(fc.rollout(synthetic_states(grid5, SMALL_VARS), 1))
    with pytest.raises(FuxiopsError, match="msl"):
        next(fc.rollout(states11.drop_vars("msl"), 1))
    with pytest.raises(DataError, match=r"lacks pressure levels \[850\]"):
        next(fc.rollout(states11.sel(level=[250, 500]), 1))
    with pytest.raises(DataError, match="lacks input time"):
        next(fc.rollout(states11.isel(time=[0, 2]), 1))
    with pytest.raises(DataError, match="'time' dimension"):
        next(fc.rollout(states11.isel(time=0), 1))
    bad = states11.copy(deep=True)
    bad["t"][-1, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        next(fc.rollout(bad, 1))
    with pytest.raises(DataError, match="shape"):
        fc.step(np.zeros((2, 3, *grid11.shape), np.float32), states11.time.values[1])


def test_arch_checks_grid_and_block_lists() -> None:
    from fuxiops.errors import ConfigError
    with pytest.raises(ConfigError, match="multiple of"):
        get_preset("base").forecaster.check_grid(get_grid("2.8125deg"))
    with pytest.raises(ConfigError, match="one entry per Swin block"):
        ForecasterArch(embed_dim=8, dim=8, heads=(1, 1), mlp_hidden=(4,), groups=2)


def test_pruned_config_is_just_another_network(grid11) -> None:
    """Per-block heads and MLP widths can differ (what physical pruning produces)."""
    from fuxiops.models.presets import with_blocks
    arch = with_blocks(get_preset("tiny").forecaster, heads=(1, 2), mlp_hidden=(16, 48))
    fc = TorchForecaster.build(arch, SMALL_VARS, grid11)
    assert fc.module.net.blocks[0].attn.qkv.out_features == 3 * 1 * arch.head_dim
    assert fc.module.net.blocks[1].mlp[0].out_features == 48
    x = np.zeros((2, len(SMALL_VARS.state_channels), *grid11.shape), np.float32) + 1.0
    assert fc.step(x, np.datetime64("2023-01-01T06")).shape == (len(SMALL_VARS.state_channels), *grid11.shape)


def test_bounds_checked_wrapper_keeps_interface_and_stops_divergence(grid11, states11) -> None:
    from fuxiops.models.base import BoundsCheckedForecaster
    inner = TorchForecaster.build("tiny", SMALL_VARS, grid11, norm=compute_stats(states11, SMALL_VARS, grid11))
    wrapped = BoundsCheckedForecaster(inner)
    # The synthetic states are not physical (t250 ~ 540 K): the first step must stop, naming the channel.
    with pytest.raises(DataError, match="t250 at 2023-01-01T12:00:00 is outside its physical bounds"):
        list(wrapped.rollout(states11, 2, time=states11.time.values[1]))
    assert wrapped.coords == inner.coords and wrapped.provenance()["wrapped_by"] == "BoundsCheckedForecaster"
