"""A tiny seeded synthetic world (reanalysis, NWP pool, gridded observations) for the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuxiops.grids import get_grid
from fuxiops.models.training.synthetic import build_synthetic_world


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_synthetic_world(tmp_path_factory.mktemp("world"), get_grid("11.25deg"))
