"""PostgreSQL checks run in a subprocess (``python pg_checks.py URL``) by test_runs / test_store.

Loading psycopg (libpq and its bundled OpenSSL) into the pytest process next to torch and Prefect made
the interpreter crash at exit; a subprocess keeps the suite's exit status clean.
"""

from __future__ import annotations

import sys
from datetime import datetime

import pytest
import sqlalchemy as sa

from fuxiops.pipeline.cycle.lock import LockTimeout, cycle_lock
from fuxiops.pipeline.cycle.runs import RunCatalog


def main(url: str) -> None:
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from test_runs import _exercise

    with RunCatalog(url) as cat:
        _exercise(cat)
    with RunCatalog(url.replace("+psycopg", "")) as cat:  # plain postgresql:// uses psycopg 3 too
        assert cat.get("2023010106").status == "degraded"  # type: ignore[union-attr]
    with cycle_lock(url, "/nonexistent"):
        with pytest.raises(LockTimeout):
            with cycle_lock(url, "/nonexistent", timeout_s=0.2, poll_s=0.05):
                pass
    with cycle_lock(url, "/nonexistent", timeout_s=1):
        pass
    assert sa.__version__
    print("pg checks ok")


if __name__ == "__main__":
    main(sys.argv[1])
