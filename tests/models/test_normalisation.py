"""Normalisation statistics from data: exact on known data, the same whole or in chunks."""

from __future__ import annotations

import numpy as np
import pytest

from fuxiops.errors import DataError
from fuxiops.models.normalisation import NormStats, compute_stats
from fuxiops.state import to_channels

from .conftest import SMALL_VARS, synthetic_states


def test_stats_match_weighted_moments(grid11) -> None:
    ds = synthetic_states(grid11, SMALL_VARS, n_times=5)
    s = compute_stats(ds, SMALL_VARS, grid11)
    x = to_channels(ds, SMALL_VARS.state_channels).astype(np.float64)
    w = grid11.lat_weights[None, None, :, None] * np.ones_like(x)
    mean = (x * w).sum(axis=(0, 2, 3)) / w.sum(axis=(0, 2, 3))
    std = np.sqrt((((x - mean[None, :, None, None]) ** 2) * w).sum(axis=(0, 2, 3)) / w.sum(axis=(0, 2, 3)))
    np.testing.assert_allclose(s.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(s.std, std, rtol=1e-4)
    d = x[1:] - x[:-1]
    np.testing.assert_allclose(s.res_std, np.sqrt(((d - (d * w[1:]).sum(axis=(0, 2, 3))[None, :, None, None]
                                                    / w[1:].sum(axis=(0, 2, 3))[None, :, None, None]) ** 2 * w[1:])
                                                  .sum(axis=(0, 2, 3)) / w[1:].sum(axis=(0, 2, 3))), rtol=1e-4)
    assert s.n_samples == 5 and s.n_tendencies == 4


def test_chunked_equals_whole_and_round_trips(grid11) -> None:
    ds = synthetic_states(grid11, SMALL_VARS, n_times=6)
    whole = compute_stats(ds, SMALL_VARS, grid11)
    chunked = compute_stats((ds.isel(time=slice(i, i + 2)) for i in range(0, 6, 2)), SMALL_VARS, grid11)
    assert chunked.n_tendencies == 5  # pairs across chunk boundaries are used
    for k, v in whole.tensors().items():
        np.testing.assert_allclose(chunked.tensors()[k], v, rtol=1e-5)
    back = NormStats.from_dict(whole.to_dict())
    for k, v in whole.tensors().items():
        assert np.array_equal(back.tensors()[k], v)


def test_stats_errors(grid11) -> None:
    ds = synthetic_states(grid11, SMALL_VARS, n_times=3)
    with pytest.raises(DataError, match="no pair of states 6 h apart"):
        compute_stats(ds.isel(time=[0, 2]), SMALL_VARS, grid11)
    with pytest.raises(DataError, match="'time'"):
        compute_stats(ds.isel(time=0), SMALL_VARS, grid11)
