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


# Native libraries loaded together by the suite (torch, JAX/XLA, psycopg, ecCodes) can crash in their
# own destructors during interpreter teardown (signal 11 after every test has passed and the summary
# was printed). The result is decided by then, so the test process leaves without running them.
_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    import os
    import sys

    if _EXIT_STATUS and os.environ.get("FUXIOPS_TEST_NORMAL_EXIT") != "1":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])
