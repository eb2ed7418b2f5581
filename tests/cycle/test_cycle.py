"""The cycle end to end on a tiny synthetic testbed, with its failure semantics.

One Prefect test server for the module; each test gets its own deployment home
(the untrained bootstrap checkpoints are built once and copied).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

import cycle_testbed_data as td

T0 = datetime(2023, 1, 1, 6)
T1 = datetime(2023, 1, 1, 12)
T2 = datetime(2023, 1, 1, 18)


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[str]:
    """A Prefect test server (SQLite) for the module; its URL is handed to subprocesses."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield str(PREFECT_API_URL.value())


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory, prefect_server: str) -> Path:
    """The untrained bootstrap networks for the test grid, built once."""
    from fuxiops.config import load_config
    from fuxiops.pipeline.cycle import components as comp

    home = tmp_path_factory.mktemp("models-home")
    cfg = load_config(td.make_home(home))
    comp.load_networks(cfg)
    return comp.untrained_dir(cfg)


@pytest.fixture
def deployment(tmp_path: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from fuxiops.config import load_config
    from fuxiops.pipeline.cycle import components as comp

    monkeypatch.setenv("FUXIOPS_DASK_INPROCESS", "1")
    monkeypatch.setenv("FUXIOPS_RETRY_BASE_S", "0")
    monkeypatch.delenv("FUXIOPS_FAULT_KILL_AFTER_LEAD", raising=False)
    home = tmp_path / "home"
    path = td.make_home(home)
    cfg = load_config(path)
    shutil.copytree(model_cache, comp.untrained_dir(cfg))
    return cfg, path


def _obs(cfg: Any, t: datetime, *, bad_rows: int = 0, corrupt: bool = False) -> None:
    folder = Path(cfg.location("observations")) / t.strftime("%Y%m%d%H")
    td.station_csv(folder / "stations.csv", t, bad_rows=bad_rows, seed=t.hour)
    if corrupt:
        (folder / "stations_late.csv").write_bytes(b"\x00\x01BUFR" + bytes(range(256)) * 3)


def _run(path: Path, t: datetime, **kw: Any) -> dict[str, Any]:
    from fuxiops.pipeline.cycle.flows import cycle

    return cycle(time=t.strftime("%Y-%m-%dT%H"), config_path=str(path), **kw)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _product_bytes(products: Path) -> dict[str, bytes]:
    """Every product file's bytes (directory stores file by file), except the manifest and NetCDF files."""
    return {str(p.relative_to(products)): p.read_bytes() for p in sorted(products.rglob("*"))
            if p.is_file() and p.name != "manifest.json" and p.suffix != ".nc"}


def _same_netcdf(a: Path, b: Path) -> None:
    """Identical data, coordinates and attributes (HDF5 headers may hold object times, so not bytes)."""
    import xarray as xr

    with xr.open_dataset(a) as x, xr.open_dataset(b) as y:
        x.attrs.pop("history", None)
        y.attrs.pop("history", None)
        assert x.identical(y)


def _check_manifest(products: Path) -> dict[str, Any]:
    manifest = json.loads((products / "manifest.json").read_text())
    for f in manifest["files"]:
        p = products / f["name"]
        assert p.exists(), f["name"]
        if p.is_file():
            assert _sha(p) == f["sha256"], f["name"]
    return manifest


def test_cold_start_own_background_degraded_and_idempotent(deployment: Any) -> None:
    from fuxiops.pipeline.cycle.runs import RunCatalog
    from fuxiops.pipeline.cycle.store import StateStore

    cfg, path = deployment
    _obs(cfg, T0, bad_rows=3, corrupt=True)
    _obs(cfg, T1)
    first = _run(path, T0)
    # No background yet: cold start from the world reanalysis, marked; corrupt pieces make it degraded.
    assert first["cold_start"] and first["status"] == "degraded"
    assert any("quarantined" in r and "stations_late.csv" in r for r in first["degraded_reasons"])
    second = _run(path, T1)
    assert second["status"] == "published" and not second["cold_start"] and not second["degraded_reasons"]
    with RunCatalog(cfg.catalog_url) as cat:
        r0, r1 = cat.get("2023010106"), cat.get("2023010112")
    assert r0.cold_start_source == "reanalysis" and r0.background_source == "cold start: reanalysis"
    assert r1.background_source == "cycle 2023010106 +6h"
    # Partly corrupt: the valid rows were used, the impossible ones rejected, not dropped.
    assert 0 < r0.obs_counts["total"]["used"] < r0.obs_counts["total"]["read"]
    assert r0.model["forecaster"]["untrained"] is True and len(r0.model["forecaster"]["weights_sha256"]) == 64
    assert set(r1.timings) >= {"ingest", "qc", "background", "assimilate", "forecast", "publish", "verify"}
    assert r1.verification["departures"] and "analysis" in r1.verification["vs_truth"]
    manifest = _check_manifest(Path(r1.products_path))
    assert manifest == r1.manifest and manifest["status"] == "published"
    assert manifest["steps"] == [0, 6, 12, 18, 24]
    # The background of cycle 12 is exactly the +6 h lead of cycle 06 (own-background cycling).
    store = StateStore(cfg.location("state"))
    assert store.exists("background", T2) and store.exists("analysis", T1)
    # Idempotent: a published cycle is a no-op unless forced.
    again = _run(path, T1)
    assert again["skipped"] and again["status"] == "published"
    with RunCatalog(cfg.catalog_url) as cat:
        assert cat.get("2023010112").attempts == 1


def test_no_observations_carries_background_forward(deployment: Any) -> None:
    from fuxiops.pipeline.cycle.runs import RunCatalog
    from fuxiops.pipeline.cycle.steps import state_array
    from fuxiops.pipeline.cycle.store import StateStore

    cfg, path = deployment
    out = _run(path, T0)
    assert out["status"] == "degraded" and out["cold_start"]
    assert "no observations received" in out["degraded_reasons"]
    assert any("carried forward" in r for r in out["degraded_reasons"])
    store = StateStore(cfg.location("state"))
    vs, grid = cfg.variable_set, cfg.grid_spec
    analysis = state_array(store.get("analysis", T0), vs, grid)
    from fuxiops.pipeline.cycle.components import cold_start_states

    _, background = cold_start_states(cfg, T0, "reanalysis")
    np.testing.assert_array_equal(analysis, background)
    with RunCatalog(cfg.catalog_url) as cat:
        assert cat.get("2023010106").obs_counts["total"] == {"read": 0, "used": 0}


def test_failed_cycle_never_corrupts_the_next_background(deployment: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from fuxiops.pipeline.cycle import components as comp
    from fuxiops.pipeline.cycle.runs import RunCatalog
    from fuxiops.pipeline.cycle.steps import state_array
    from fuxiops.pipeline.cycle.store import StateStore

    cfg, path = deployment
    _obs(cfg, T0)
    _obs(cfg, T1)
    _run(path, T0)
    store = StateStore(cfg.location("state"))
    vs, grid = cfg.variable_set, cfg.grid_spec
    before = state_array(store.get("background", T1), vs, grid)
    ptr = store.pointer("background", T1)
    products = Path(cfg.location("products")) / "2023010106"
    published = _check_manifest(products)

    real = comp.encode_format

    def failing(fmt: str, *args: Any, **kwargs: Any) -> Any:
        if fmt == "netcdf":
            raise OSError(28, "No space left on device")
        return real(fmt, *args, **kwargs)

    monkeypatch.setattr(comp, "encode_format", failing)
    with pytest.raises(Exception, match="No space left"):
        _run(path, T0, force=True)  # the forecast finishes, then publishing fails
    monkeypatch.undo()
    monkeypatch.setenv("FUXIOPS_DASK_INPROCESS", "1")
    monkeypatch.setenv("FUXIOPS_RETRY_BASE_S", "0")
    with RunCatalog(cfg.catalog_url) as cat:
        rec = cat.get("2023010106")
        assert rec.status == "failed" and "No space left" in rec.error
    # The next cycle's background and the earlier publication are untouched; no staging left behind.
    assert store.pointer("background", T1) == ptr
    np.testing.assert_array_equal(state_array(store.get("background", T1), vs, grid), before)
    assert _check_manifest(products) == published
    assert not [p for p in products.parent.iterdir() if p.name.startswith(".")]


def _cli(path: Path, t: datetime, server: str, *extra: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, "PREFECT_API_URL": server, "FUXIOPS_DASK_INPROCESS": "1", "FUXIOPS_RETRY_BASE_S": "0",
         **(env or {})}
    return subprocess.run([sys.executable, "-m", "fuxiops.cli.main", "--config", str(path), "cycle", "run", "--time",
                           t.strftime("%Y-%m-%dT%H"), *extra], env=e, capture_output=True, text=True, timeout=300)


def test_sigkill_mid_forecast_resumes_byte_identical(deployment: Any, prefect_server: str) -> None:
    from fuxiops.pipeline.cycle.runs import RunCatalog

    cfg, path = deployment
    _obs(cfg, T0)
    reference = _run(path, T0)  # uninterrupted
    products = Path(reference["products_path"])
    _check_manifest(products)
    ref_bytes = _product_bytes(products)
    reference_dir = products.parent.parent / "reference"
    shutil.move(products, reference_dir)  # moved away: the re-run publishes afresh
    # Re-run from scratch; the worker is SIGKILLed right after lead 2 of 4 is checkpointed.
    killed = _cli(path, T0, prefect_server, "--force", env={"FUXIOPS_FAULT_KILL_AFTER_LEAD": "2"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not products.exists()  # nothing partial was published
    with RunCatalog(cfg.catalog_url) as cat:
        assert cat.get("2023010106").status == "running"  # the dead attempt
    leads = sorted(p.name for p in (Path(cfg.location("runs")) / "2023010106" / "leads").glob("step_*.npy"))
    assert leads == ["step_001.npy", "step_002.npy"]
    # The retried cycle resumes after lead 2 and publishes exactly the same bytes.
    retried = _cli(path, T0, prefect_server, "--force")
    assert retried.returncode == 0, retried.stderr[-3000:]
    assert "resuming the forecast after lead 12 h" in retried.stderr + retried.stdout
    _check_manifest(products)
    got = _product_bytes(products)
    assert sorted(got) == sorted(ref_bytes)
    assert [name for name in got if got[name] != ref_bytes[name]] == []  # GRIB2, indexes, Zarr: byte-identical
    ncs = sorted(p.name for p in products.glob("*.nc"))
    assert ncs and ncs == sorted(p.name for p in reference_dir.glob("*.nc"))
    for name in ncs:
        _same_netcdf(products / name, reference_dir / name)
    with RunCatalog(cfg.catalog_url) as cat:
        rec = cat.get("2023010106")
        assert rec.status == "published" and rec.attempts == 3
    assert not (Path(cfg.location("runs")) / "2023010106").exists()  # work dir cleaned after success


@pytest.mark.slow  # the catalog and the lock are tested on PostgreSQL in test_runs / test_store
def test_postgresql_catalog_cycle(deployment: Any, postgres_url: str) -> None:
    from fuxiops.config import load_config
    from fuxiops.pipeline.cycle.runs import RunCatalog

    cfg, path = deployment
    text = path.read_text() + f"data:\n  catalog_url: {postgres_url}\n"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.catalog_url == postgres_url
    _obs(cfg, T0)
    out = _run(path, T0)
    assert out["status"] == "published"
    with RunCatalog(postgres_url) as cat:
        assert cat.get("2023010106").status == "published"
