"""Tiny forecasters for the compression tests (11.25 deg grid, a few channels, seeded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fuxiops.catalog import VariableSet
from fuxiops.grids import get_grid

VARS = VariableSet(upper_air=("z", "t"), levels=(500, 850), surface=("t2m", "msl"), diagnostics=())
GRID = get_grid("11.25deg")
# Physical scales like the real ones so that "normalised units" mean something.
MEAN = np.array([5.5e4, 1.4e4, 252.0, 281.0, 283.0, 1.011e5], np.float32)
STD = np.array([3.0e3, 1.5e3, 11.0, 13.0, 15.0, 1.1e3], np.float32)


def tiny_forecaster(seed: int = 0, heads: tuple[int, ...] = (2, 2, 2, 2), mlp: tuple[int, ...] = (64,) * 4):
    from fuxiops.models.normalisation import NormStats
    from fuxiops.models.presets import get_preset, with_blocks
    from fuxiops.models.torch_forecaster import TorchForecaster

    arch = with_blocks(get_preset("tiny").forecaster, heads, mlp)
    norm = NormStats(tuple(VARS.state_names), MEAN, STD, np.zeros(6, np.float32), 0.1 * STD)
    return TorchForecaster.build(arch, VARS, GRID, norm=norm, seed=seed)


def initial_state(seed: int = 0):
    """Two input times (t-6h, t) around the normalisation mean, as a state dataset."""
    from fuxiops.state import from_channels

    rng = np.random.default_rng(seed)
    arr = MEAN[None, :, None, None] + STD[None, :, None, None] * rng.normal(size=(2, 6, *GRID.shape))
    times = np.array(["2023-01-01T00", "2023-01-01T06"], dtype="datetime64[ns]")
    return from_channels(arr.astype(np.float32), VARS.state_channels, GRID, leading={"time": times})


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny networks: one thread is several times faster than two on a busy 2-core CI machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("teacher") / "teacher"
    tiny_forecaster(0).save(path, training={"note": "untrained test teacher"})
    return path
