"""The run catalog: Alembic migrations, status lifecycle, JSON fields, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from fuxiops.pipeline.cycle.runs import CatalogError, RunCatalog, schema_revision


def _exercise(cat: RunCatalog) -> None:
    t0, t1 = datetime(2023, 1, 1, 0), datetime(2023, 1, 1, 6)
    assert schema_revision(cat.engine) == "0001_runs"
    r = cat.start(t0, flow_run_id="abc")
    assert (r.run_id, r.status, r.attempts) == ("2023010100", "running", 1)
    cat.update(r.run_id, obs_counts={"synop": np.int64(12)}, timings={"forecast": np.float32(1.5)},
               model={"forecaster": {"sha256": "ab" * 32, "untrained": True}}, cold_start=True,
               cold_start_source="reanalysis")
    assert cat.finish(r.run_id, degraded_reasons=[], manifest={"files": [{"name": "a", "sha256": "x"}]}) == "published"
    cat.start(t1)
    assert cat.finish("2023010106", degraded_reasons=["no observations"]) == "degraded"
    got = cat.get("2023010100")
    assert got is not None and got.is_published and got.obs_counts == {"synop": 12}
    assert got.timings == {"forecast": 1.5} and got.cold_start and got.cold_start_source == "reanalysis"
    assert got.manifest == {"files": [{"name": "a", "sha256": "x"}]}
    assert [x.run_id for x in cat.list()] == ["2023010106", "2023010100"]
    assert [x.run_id for x in cat.list(status="degraded")] == ["2023010106"]
    assert cat.latest_published().run_id == "2023010106"  # type: ignore[union-attr]
    # A new attempt clears the previous attempt's outcome and counts attempts.
    again = cat.start(t0)
    assert again.status == "running" and again.attempts == 2 and again.degraded_reasons == []
    cat.fail("2023010100", "boom")
    assert cat.get("2023010100").status == "failed"  # type: ignore[union-attr]
    with pytest.raises(CatalogError, match="unknown run status"):
        cat.update("2023010100", status="done")
    with pytest.raises(CatalogError, match="no run"):
        cat.update("1999010100", status="failed")
    # The database itself refuses an invalid status (check constraint), not only our code.
    with pytest.raises(sa.exc.IntegrityError):
        with cat.engine.begin() as conn:
            conn.execute(sa.text("UPDATE runs SET status = 'bogus' WHERE run_id = '2023010100'"))


def test_sqlite_catalog_migrates_and_round_trips(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/sub/catalog.sqlite"
    with RunCatalog(url) as cat:
        _exercise(cat)
    # Re-opening runs the migrations again as a no-op and keeps the data.
    with RunCatalog(url) as cat:
        assert len(cat.list(limit=None)) == 2


def test_bad_url_is_a_clear_error() -> None:
    with pytest.raises(CatalogError, match="invalid catalog URL"):
        RunCatalog("not a url")


def test_postgresql_catalog_and_lock(postgres_url: str) -> None:
    """Migrations, the run lifecycle and the advisory cycle lock on a real PostgreSQL server."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, str(Path(__file__).with_name("pg_checks.py")), postgres_url],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "pg checks ok" in p.stdout, p.stdout[-2000:] + p.stderr[-3000:]
