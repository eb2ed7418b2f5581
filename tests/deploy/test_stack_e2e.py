"""End to end on the native stack: PostgreSQL, Prefect server + process worker, Dask scheduler + worker, the API.

The cycle deployment is triggered through the Prefect REST API; the forecast
and a GRIB2 file are fetched through the fuxiops API and checked against the
run; the worker is stopped in the middle of a re-run of the same cycle and
started again, and the cycle completes with the same products. Tiny grid
(11.25 deg), 4 forecast steps. Needs PostgreSQL's server binaries
(apt-get install -y postgresql); marker ``services``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

pytestmark = [pytest.mark.services, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2023, 1, 1, 6)
RUN_ID = T0.strftime("%Y%m%d%H")
CYCLE_DEPLOYMENT = "cycle/fuxiops-cycle"


def _testbed() -> Any:
    """The cycle tests' seeded synthetic deployment (tiny grid, reanalysis + truth stores, station CSVs)."""
    sys.path.insert(0, str(REPO / "tests" / "cycle"))
    try:
        import cycle_testbed_data as td
    finally:
        sys.path.pop(0)
    return td


def _have_postgres() -> bool:
    return bool(list(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or shutil.which("initdb"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not _have_postgres():
        pytest.fail("PostgreSQL server binaries are missing: apt-get install -y postgresql")
    from fuxiops.config import load_config
    from fuxiops.pipeline.stack.settings import StackSettings
    from fuxiops.pipeline.stack.stack import Stack

    # PostgreSQL runs as the unprivileged 'postgres' user when we are root: it must reach the stack folder,
    # so the home is a fresh folder under /tmp that others may enter (pytest's own temp root is 0700).
    home = Path(tempfile.mkdtemp(prefix="fuxiops-e2e-"))
    os.chmod(home, 0o711)
    td = _testbed()
    cfg_path = td.make_home(home, steps=4)
    td.station_csv(home / "observations" / RUN_ID / "stations.csv", T0, seed=T0.hour)
    saved = {k: os.environ.get(k) for k in ("FUXIOPS_HOME", "FUXIOPS_CONFIG", "FUXIOPS_RETRY_BASE_S")}
    os.environ.update({"FUXIOPS_HOME": str(home), "FUXIOPS_CONFIG": str(cfg_path), "FUXIOPS_RETRY_BASE_S": "0"})
    cfg = load_config(cfg_path)
    settings = StackSettings(api_port=0, api_workers=2, dask_workers=1, ready_timeout=180)
    st = Stack(cfg, config_path=cfg_path, settings=settings, echo=lambda m: print(m, flush=True))
    try:
        t0 = time.monotonic()
        st.up()
        print(f"stack up in {time.monotonic() - t0:.1f} s", flush=True)
        yield st
    finally:
        try:
            st.down()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            shutil.rmtree(home, ignore_errors=True)


def _summary(st: Any) -> dict[str, Any]:
    return st.status()


def _prefect(st: Any) -> str:
    return _summary(st)["prefect_api_url"]


def _api(st: Any) -> str:
    return _summary(st)["api_url"]


def _trigger(st: Any, parameters: dict[str, Any]) -> str:
    api = _prefect(st)
    dep = httpx.get(f"{api}/deployments/name/{CYCLE_DEPLOYMENT}", timeout=10)
    assert dep.status_code == 200, f"deployment {CYCLE_DEPLOYMENT} is not registered: {dep.text}"
    run = httpx.post(f"{api}/deployments/{dep.json()['id']}/create_flow_run", json={"parameters": parameters},
                     timeout=10)
    assert run.status_code in (200, 201), run.text
    return str(run.json()["id"])


def _state(st: Any, run_id: str) -> str:
    return str(httpx.get(f"{_prefect(st)}/flow_runs/{run_id}", timeout=10).json()["state_type"])


def _wait_state(st: Any, run_id: str, wanted: set[str], timeout: float, poll: float = 0.5) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = _state(st, run_id)
        if state in wanted:
            return state
        if state in {"FAILED", "CRASHED", "CANCELLED"} - wanted:
            break
        time.sleep(poll)
    log = Path(st.logs / "prefect-worker.log").read_text(errors="replace")[-4000:]
    pytest.fail(f"flow run {run_id} is {state}, wanted {sorted(wanted)}; worker log:\n{log}")


def _product_bytes(folder: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            out[p.relative_to(folder).as_posix()] = p.read_bytes()
    return out


def _nc_diff(a: bytes, b: bytes) -> str:
    """Which attributes or variables of two NetCDF files differ (for the failure message)."""
    import netCDF4
    import numpy as np

    da, db = netCDF4.Dataset("a", memory=a), netCDF4.Dataset("b", memory=b)
    if sorted(da.ncattrs()) != sorted(db.ncattrs()) or sorted(da.variables) != sorted(db.variables):
        return f"attributes {sorted(da.ncattrs())} / {sorted(db.ncattrs())}, variables {sorted(da.variables)} / " \
               f"{sorted(db.variables)}"
    out = [f"attr {k}: {da.getncattr(k)!r} != {db.getncattr(k)!r}" for k in da.ncattrs()
           if k != "history" and str(da.getncattr(k)) != str(db.getncattr(k))]
    for name, var in da.variables.items():
        if not np.array_equal(np.asarray(var[:]), np.asarray(db.variables[name][:]), equal_nan=True):
            out.append(f"variable {name} values differ")
        for k in var.ncattrs():
            if str(var.getncattr(k)) != str(db.variables[name].getncattr(k)):
                out.append(f"{name}.{k}: {var.getncattr(k)!r} != {db.variables[name].getncattr(k)!r}")
    return "; ".join(out)


SHARED: dict[str, Any] = {}


def test_services_are_up_and_wired(stack: Any) -> None:
    s = _summary(stack)
    assert all(v["running"] for v in s["services"].values()), s["services"]
    for name, port in s["ports"].items():
        assert 1024 <= port <= 65535, (name, port)
    # Deployments: the cycle's and the operations'.
    api = s["prefect_api_url"]
    for name in (CYCLE_DEPLOYMENT, "train/fuxiops-train", "compress/fuxiops-compress"):
        assert httpx.get(f"{api}/deployments/name/{name}", timeout=10).status_code == 200, name
    # The run catalog and Prefect live in the stack's PostgreSQL.
    import psycopg

    from fuxiops.pipeline.stack import postgres

    pw = stack.secrets()["pg_password"]
    with psycopg.connect(host="127.0.0.1", port=s["ports"]["postgres"], user=postgres.SUPERUSER, password=pw,
                         dbname="postgres", connect_timeout=5) as conn:
        dbs = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert {"prefect", "fuxiops"} <= dbs
    with pytest.raises(psycopg.OperationalError):  # password authentication is on
        psycopg.connect(host="127.0.0.1", port=s["ports"]["postgres"], user=postgres.SUPERUSER,
                        password="wrong", dbname="postgres", connect_timeout=5)
    health = httpx.get(f"{s['api_url']}/health", timeout=10)
    assert health.status_code == 200


def test_cycle_triggered_through_prefect_is_served_by_the_api(stack: Any) -> None:
    t0 = time.monotonic()
    flow_run = _trigger(stack, {"time": T0.strftime("%Y-%m-%dT%H")})
    _wait_state(stack, flow_run, {"COMPLETED"}, timeout=240)
    SHARED["first_cycle_s"] = time.monotonic() - t0
    print(f"cycle {RUN_ID} completed in {SHARED['first_cycle_s']:.1f} s", flush=True)
    api = _api(stack)
    # The API serves the run (its product catalog re-reads the folder within a few seconds).
    deadline = time.monotonic() + 30
    while True:
        fc = httpx.get(f"{api}/v1/forecast", params={"latitude": 45.0, "longitude": 10.0,
                                                      "hourly": "temperature_2m"}, timeout=30)
        if fc.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert fc.status_code == 200, fc.text
    body = fc.json()
    assert body["run"]["id"] == RUN_ID
    assert body["run"]["cycle_time"].startswith("2023-01-01T06:00")
    temps = body["hourly"]["temperature_2m"]
    assert len(temps) == 5 and all(t is not None and -90 < t < 60 for t in temps)  # steps 0..4, deg C
    # A GRIB2 file listed in the run's manifest, downloaded through the API, is the published file.
    manifest = httpx.get(f"{api}/runs/{RUN_ID}", timeout=10).json()
    gribs = [f for f in manifest["files"] if f["format"] == "grib2"]
    assert gribs, manifest["files"]
    entry = gribs[-1]
    got = httpx.get(f"{api}/runs/{RUN_ID}/files/{entry['name']}", timeout=30)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == entry["sha256"]
    import eccodes

    gid = eccodes.codes_new_from_message(got.content)
    try:
        assert eccodes.codes_get(gid, "edition") == 2
        assert eccodes.codes_get(gid, "dataDate") == 20230101 and eccodes.codes_get(gid, "dataTime") == 600
    finally:
        eccodes.codes_release(gid)
    products = Path(stack.cfg.location("products")) / RUN_ID
    SHARED["reference"] = _product_bytes(products)
    assert SHARED["reference"]


def test_worker_stopped_mid_cycle_then_restarted_completes_with_the_same_products(stack: Any) -> None:
    assert "reference" in SHARED, "needs the first cycle"
    for _attempt in range(3):
        flow_run = _trigger(stack, {"time": T0.strftime("%Y-%m-%dT%H"), "force": True})
        _wait_state(stack, flow_run, {"RUNNING"}, timeout=120, poll=0.2)
        stopped = stack.down(["prefect-worker"])
        assert stopped == ["prefect-worker"]
        if _state(stack, flow_run) != "COMPLETED":
            break
        stack.up(["prefect-worker"])  # the cycle won the race against the stop: nothing was interrupted, again
    else:
        pytest.fail("the cycle finished before the worker was stopped in 3 attempts: nothing was interrupted")
    assert not stack.status()["services"]["prefect-worker"]["running"]
    time.sleep(2)
    assert _state(stack, flow_run) != "COMPLETED"  # nothing runs it while the worker is down
    stack.up(["prefect-worker"])
    _wait_state(stack, flow_run, {"COMPLETED"}, timeout=240)
    runs = httpx.get(f"{_prefect(stack)}/flow_runs/{flow_run}", timeout=10).json()
    assert runs["run_count"] >= 2, "the run was not run again after the restart"
    products = Path(stack.cfg.location("products")) / RUN_ID
    got = _product_bytes(products)
    assert sorted(got) == sorted(SHARED["reference"])
    for name, data in got.items():
        ref = SHARED["reference"][name]
        if name.endswith(".nc"):
            # HDF5 checksums its object headers, so the publication stamp changes bytes beyond itself:
            # compare every attribute (but the stamp) and every variable's values and attributes.
            detail = _nc_diff(ref, data)
            assert detail == "", f"{name} differs from the uninterrupted cycle's: {detail}"
        else:
            assert data == ref, f"{name} differs from the uninterrupted cycle's ({len(ref)} vs {len(data)} bytes)"


def test_stack_down_stops_exactly_what_it_started(stack: Any) -> None:
    from fuxiops.pipeline.stack.procs import is_alive, port_in_use
    from fuxiops.pipeline.stack.stack import StackState

    state = StackState.load(stack.root / "state.json")
    records = dict(state.services)
    assert set(records) == {"postgres", "prefect-server", "dask-scheduler", "dask-worker", "prefect-worker", "api"}
    ports = dict(state.ports)
    stopped = stack.down()
    assert set(stopped) == set(records)
    for name, rec in records.items():
        assert not is_alive(rec), f"{name} (pid {rec.pid}) still runs"
    for name, port in ports.items():
        assert not port_in_use(port), f"{name} still listens on {port}"
    assert not any(StackState.load(stack.root / "state.json").services.values())
