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


# ------------------------------------------------------------------ innovations

NAMES = {"synop": ["t2m", "t2m_mask", "msl_extra"], "temp": ["t850", "t850_mask", "z500", "z500_mask", "rh"]}


@pytest.fixture
def asm_inn(grid11) -> TorchAssimilator:
    return TorchAssimilator.build("tiny", SMALL_VARS, grid11, GROUPS, seed=0, channel_names=NAMES)


def _named_obs(asm: TorchAssimilator, bg: xr.Dataset, grid: Grid, normalisation: dict | None = None
               ) -> xr.Dataset:
    """Observations of t2m, t850 and z500 at a third of the cells, normalised like the state."""
    import json

    rng = np.random.default_rng(3)
    x = asm.background_array(bg, bg.time.values)
    names = asm.coords.variables.state_names
    mean, std = asm.norm.mean, asm.norm.std
    out = {}
    for g, chans in NAMES.items():
        arr = np.zeros((len(chans), *grid.shape), np.float32)
        for i, c in enumerate(chans):
            if c in names:
                m = rng.random(grid.shape) < 0.33
                si = names.index(c)
                value = x[si] + rng.normal(0, 2.0, grid.shape)
                m_, s_ = (normalisation or {}).get(c, (mean[si], std[si]))
                arr[i] = np.where(m, (value - m_) / s_, 0.0)
                arr[chans.index(f"{c}_mask")] = m
        attrs = {"normalisation": json.dumps({c: list(v) for c, v in (normalisation or {}).items()})}
        out[g] = ((f"{g}_channel", "latitude", "longitude"), arr, attrs)
    return xr.Dataset(out, coords={"latitude": grid.latitudes, "longitude": grid.longitudes,
                                   **{f"{g}_channel": c for g, c in NAMES.items()}})


def test_innovations_are_found_by_name_and_travel_with_the_checkpoint(asm_inn, tmp_path) -> None:
    assert sorted((i.group, i.name, i.value, i.mask) for i in asm_inn.innovations) == \
        [("synop", "t2m", 0, 1), ("temp", "t850", 0, 1), ("temp", "z500", 2, 3)]
    asm_inn.save(tmp_path / "a")
    back = TorchAssimilator.load(tmp_path / "a")
    assert back.innovations == asm_inn.innovations
    assert back.module.net.innovation is not None


def test_innovation_is_observation_minus_background_in_increment_units(asm_inn, grid11, states11) -> None:
    bg = states11.isel(time=1)
    x = torch.from_numpy(asm_inn.background_array(bg, bg.time.values))[None]
    obs = _named_obs(asm_inn, bg, grid11)
    m = asm_inn.module
    bn = (x - m.mean[:, None, None]) / m.std[:, None, None]
    tens = {g: torch.from_numpy(obs[g].values)[None] for g in GROUPS}
    inn, flag = m._innovations(bn, tens, torch.ones(1, 2))
    k = [i.name for i in m.innovations].index("t850")
    spec = m.innovations[k]
    si = spec.state
    mask = obs["temp"].values[spec.mask] > 0
    obs_phys = obs["temp"].values[spec.value] * m.std[si].item() + m.mean[si].item()
    want = (obs_phys - x[0, si].numpy()) / m.inc_std[si].item()
    np.testing.assert_allclose(inn[0, k].numpy()[mask], np.clip(want[mask], -20, 20), rtol=1e-4, atol=1e-4)
    assert np.all(inn[0, k].numpy()[~mask] == 0) and float(flag) == 1.0
    # Groups masked: innovations are zero and the branch adds nothing (the background-only path).
    inn0, flag0 = m._innovations(bn, tens, torch.zeros(1, 2))
    assert float(inn0.abs().sum()) == 0 and float(flag0) == 0.0


def test_analysis_follows_an_observed_departure(asm_inn, grid11, states11) -> None:
    """Changing observed values changes the analysis through the innovation branch."""
    bg = states11.isel(time=1)
    t = bg.time.values
    obs = _named_obs(asm_inn, bg, grid11)
    shifted = obs.copy(deep=True)
    mask = shifted["synop"].values[1] > 0
    shifted["synop"].values[0][mask] += 1.0
    assert not np.array_equal(asm_inn.analyse(bg, obs, t)["t2m"].values,
                              asm_inn.analyse(bg, shifted, t)["t2m"].values)


def test_observations_gridded_with_other_statistics_give_the_same_analysis(asm_inn, grid11, states11) -> None:
    """Innovations are computed in the state's normalisation whatever statistics the gridding used."""
    bg = states11.isel(time=1)
    t = bg.time.values
    names = asm_inn.coords.variables.state_names
    same = _named_obs(asm_inn, bg, grid11)
    other_stats = {c: (float(asm_inn.norm.mean[names.index(c)]) + 3.0, float(asm_inn.norm.std[names.index(c)]) * 2)
                   for c in ("t2m", "t850", "z500")}
    other = _named_obs(asm_inn, bg, grid11, normalisation=other_stats)
    np.testing.assert_allclose(asm_inn.analyse(bg, same, t)["t"].values, asm_inn.analyse(bg, other, t)["t"].values,
                               rtol=1e-5, atol=1e-4)


def test_wrong_innovation_channel_names_are_named(asm_inn, grid11, states11) -> None:
    bg = states11.isel(time=1)
    obs = _named_obs(asm_inn, bg, grid11)
    swapped = obs.assign_coords(temp_channel=["z500", "z500_mask", "t850", "t850_mask", "rh"])
    with pytest.raises(DataError, match="'temp': channels .* the assimilator expects"):
        asm_inn.analyse(bg, swapped, bg.time.values)


# ------------------------------------------------------------------ successive-correction term

def test_spread_pulls_towards_an_isolated_observation_and_travels_with_the_checkpoint(grid11, states11,
                                                                                    tmp_path) -> None:
    """One t850 report 2 K warmer than the background: with the network's increment zeroed, the term
    warms t850 most at the report's cell, less one cell away, not at all far away or in other channels."""
    import json

    asm = TorchAssimilator.build("tiny", SMALL_VARS, grid11, GROUPS, seed=0, channel_names=NAMES, spread_km=1500.0)
    m = asm.module
    torch.nn.init.zeros_(m.net.head.weight)
    torch.nn.init.zeros_(m.net.head.bias)
    bg = states11.isel(time=1)
    x = asm.background_array(bg, bg.time.values)
    names = asm.coords.variables.state_names
    si = names.index("t850")
    i, j = grid11.n_lat // 2, 3
    arr = {g: np.zeros((len(c), *grid11.shape), np.float32) for g, c in NAMES.items()}
    arr["temp"][0, i, j] = (x[si, i, j] + 2.0 - asm.norm.mean[si]) / asm.norm.std[si]
    arr["temp"][1, i, j] = 1.0
    obs = xr.Dataset({g: ((f"{g}_channel", "latitude", "longitude"), a, {"normalisation": json.dumps({})})
                      for g, a in arr.items()},
                     coords={"latitude": grid11.latitudes, "longitude": grid11.longitudes,
                             **{f"{g}_channel": c for g, c in NAMES.items()}})
    ana = asm.analyse(bg, obs, bg.time.values)
    inc = asm.background_array(ana, bg.time.values) - x
    assert 0.5 < inc[si, i, j] < 2.0  # gain 0.5 and the density term: a partial pull, never past the report
    assert 0 < inc[si, i, j + 1] < inc[si, i, j]
    assert abs(inc[si, i, (j + grid11.n_lon // 2) % grid11.n_lon]) < 1e-6
    others = [k for k in range(len(names)) if k != si]
    assert np.abs(inc[others]).max() < 1e-6
    # Longitude is periodic: a report at the date line spreads to the other side.
    arr["temp"][:, i, j] = 0.0
    arr["temp"][0, i, 0] = (x[si, i, 0] + 2.0 - asm.norm.mean[si]) / asm.norm.std[si]
    arr["temp"][1, i, 0] = 1.0
    obs["temp"].values[:] = arr["temp"]
    inc = asm.background_array(asm.analyse(bg, obs, bg.time.values), bg.time.values) - x
    np.testing.assert_allclose(inc[si, i, 1], inc[si, i, -1], rtol=1e-4)
    asm.save(tmp_path / "a")
    back = TorchAssimilator.load(tmp_path / "a")
    assert back.arch.spread_km == 1500.0 and back.module.spread is not None
    np.testing.assert_array_equal(back.analyse(bg, obs, bg.time.values)["t"].values,
                                  asm.analyse(bg, obs, bg.time.values)["t"].values)


def test_spread_gain_is_learned_and_adds_nothing_without_observations(grid11, states11) -> None:
    asm = TorchAssimilator.build("tiny", SMALL_VARS, grid11, GROUPS, seed=0, channel_names=NAMES, spread_km=800.0)
    m = asm.module
    bg = states11.isel(time=1)
    x = torch.from_numpy(asm.background_array(bg, bg.time.values))[None]
    obs = _named_obs(asm, bg, grid11)
    tens = {g: torch.from_numpy(obs[g].values)[None] for g in GROUPS}
    clock = torch.zeros(1, 4)
    m(x, tens, torch.ones(1, 2), clock).abs().sum().backward()
    assert float(m.spread.gain.grad.abs().sum()) > 0 and float(m.spread.log_kappa.grad.abs().sum()) > 0
    with torch.no_grad():
        without = m(x, tens, torch.zeros(1, 2), clock)
        m.spread.gain.fill_(0.0)
        assert torch.equal(without, m(x, tens, torch.zeros(1, 2), clock))


def test_spread_needs_innovations(grid11) -> None:
    from fuxiops.errors import ConfigError

    with pytest.raises(ValueError, match="spread_km needs innovation channels"):
        TorchAssimilator.build("tiny", SMALL_VARS, grid11, GROUPS, seed=0, spread_km=500.0)
    with pytest.raises(ConfigError, match="spread_km"):
        TorchAssimilator.build("tiny", SMALL_VARS, grid11, GROUPS, seed=0, channel_names=NAMES, spread_km=-1.0)
