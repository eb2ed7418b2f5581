"""Shared fixtures: the real sample data folder and isolated fuxiops homes."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """``../shared/data/real`` (read-only real BUFR / GRIB / NetCDF samples)."""
    assert REAL_DATA.is_dir(), f"real sample data not found at {REAL_DATA}"
    return REAL_DATA


@pytest.fixture
def fuxiops_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private FUXIOPS_HOME so tests never touch the user's data."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("FUXIOPS_HOME", str(home))
    monkeypatch.delenv("FUXIOPS_CONFIG", raising=False)
    return home
