"""Fixtures for product tests: a tiny seeded synthetic run, published once per session."""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from fuxiops.catalog import PRODUCTION
from fuxiops.grids import get_grid
from fuxiops.pipeline.products import RunMeta, publish, synthetic
from fuxiops.pipeline.products.publish import PublishResult

GRID = get_grid("11.25deg")  # 17 x 32
REF = datetime(2023, 1, 1, 6)


@pytest.fixture(scope="session")
def run() -> RunMeta:
    return synthetic.run_meta(GRID, PRODUCTION, REF, n_steps=2)


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory, run: RunMeta) -> PublishResult:
    out = tmp_path_factory.mktemp("products")
    return publish(synthetic.forecast(run, seed=1), run, out, ["grib2", "netcdf", "zarr"])


def tool(name: str) -> str:
    """Path of a command-line tool, or skip (with the Debian package to install)."""
    path = shutil.which(name)
    if path is None:
        pkg = {"grib_ls": "libeccodes-tools", "grib_compare": "libeccodes-tools", "cdo": "cdo"}.get(name, name)
        pytest.skip(f"{name} not installed (apt-get install -y {pkg})")
    return path


def run_tool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60)
