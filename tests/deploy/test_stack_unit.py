"""The native stack's parts that need no services: settings checks, process groups, the state file, probes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fuxiops.config import load_config
from fuxiops.errors import ConfigError
from fuxiops.pipeline.stack.healthcheck import endpoint
from fuxiops.pipeline.stack.preflight import env_name, preflight
from fuxiops.pipeline.stack.procs import ProcessRecord, StackError, is_alive, spawn, stop_group, wait_ready
from fuxiops.pipeline.stack.stack import Stack, StackState

DIGEST = "a" * 64
REPO = Path(__file__).resolve().parents[2]


def test_env_names_follow_the_config_convention() -> None:
    assert env_name("data.catalog_url") == "FUXIOPS_DATA__CATALOG_URL"
    assert env_name("api.admin_key_sha256") == "FUXIOPS_API__ADMIN_KEY_SHA256"


def test_good_settings_pass(fuxiops_home: Path) -> None:
    cfg = load_config(api={"admin_key_sha256": [DIGEST]})
    preflight(cfg, "api", env={})
    preflight(cfg, "worker", env={"PREFECT_API_URL": "http://prefect-server:4200/api"})
    preflight(cfg, "prefect-server", env={"PREFECT_API_DATABASE_CONNECTION_URL": "postgresql+asyncpg://u:p@h/prefect"})
    preflight(cfg, "dask", env={})


@pytest.mark.parametrize("overrides,role,env,named", [
    ({"data": {"catalog_url": "not a url"}}, "worker", {"PREFECT_API_URL": "http://p:4200/api"},
     "data.catalog_url (FUXIOPS_DATA__CATALOG_URL)"),
    ({"data": {"catalog_url": "mysql://u@h/db"}}, "worker", {"PREFECT_API_URL": "http://p:4200/api"},
     "data.catalog_url"),
    ({"data": {"catalog_url": "postgresql+psycopg://h"}}, "worker", {"PREFECT_API_URL": "http://p:4200/api"},
     "data.catalog_url"),
    ({"api": {"admin_key_sha256": []}}, "api", {}, "api.admin_key_sha256 (FUXIOPS_API__ADMIN_KEY_SHA256): missing"),
    ({"api": {"admin_key_sha256": ["my-plain-key"]}}, "api", {}, "api.admin_key_sha256"),
    ({"api": {"admin_key_sha256": [DIGEST], "read_key_sha256": ["XYZ"]}}, "api", {}, "api.read_key_sha256"),
    ({}, "worker", {}, "PREFECT_API_URL: missing"),
    ({}, "worker", {"PREFECT_API_URL": "localhost:4200"}, "PREFECT_API_URL"),
    ({}, "prefect-server", {}, "PREFECT_API_DATABASE_CONNECTION_URL: missing"),
    ({}, "prefect-server", {"PREFECT_API_DATABASE_CONNECTION_URL": "mysql://x"}, "PREFECT_API_DATABASE_CONNECTION_URL"),
    ({"dask": {"scheduler_address": "dask:8786"}}, "worker", {"PREFECT_API_URL": "http://p:4200/api"},
     "dask.scheduler_address"),
])
def test_wrong_settings_are_refused_by_name(fuxiops_home: Path, overrides: dict, role: str, env: dict,
                                            named: str) -> None:
    base = {"api": {"admin_key_sha256": [DIGEST]}}
    base.update(overrides)
    cfg = load_config(**base)
    with pytest.raises(ConfigError) as e:
        preflight(cfg, role, env=env)
    assert named in str(e.value)
    assert f"{role} refuses to start" in str(e.value)


def test_storage_path_that_is_a_file_is_refused(fuxiops_home: Path) -> None:
    (fuxiops_home / "products").write_text("not a folder")
    cfg = load_config(api={"admin_key_sha256": [DIGEST]})
    with pytest.raises(ConfigError, match=r"data.products \(FUXIOPS_DATA__PRODUCTS\): .* is not a folder"):
        preflight(cfg, "api", env={})


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_storage_is_refused(fuxiops_home: Path) -> None:
    locked = fuxiops_home / "locked"
    locked.mkdir(mode=0o500)
    cfg = load_config(data={"state": str(locked / "state")})
    with pytest.raises(ConfigError, match="data.state"):
        preflight(cfg, "worker", env={"PREFECT_API_URL": "http://p:4200/api"})


def test_unreachable_catalog_database_is_named(fuxiops_home: Path) -> None:
    from fuxiops.pipeline.stack.procs import free_port

    url = f"postgresql+psycopg://fuxiops:pw@127.0.0.1:{free_port()}/fuxiops"
    cfg = load_config(data={"catalog_url": url}, api={"admin_key_sha256": [DIGEST]})
    with pytest.raises(ConfigError, match=r"data.catalog_url .*cannot connect") as e:
        preflight(cfg, "worker", env={"PREFECT_API_URL": "http://p:4200/api"}, connect=True)
    assert "pw" not in str(e.value).replace("postgresql+psycopg://fuxiops:***", ""), "password leaked"


def test_cli_check_exits_2_naming_the_setting(fuxiops_home: Path) -> None:
    env = {**os.environ, "FUXIOPS_API__ADMIN_KEY_SHA256": '["plain-key"]', "FUXIOPS_HOME": str(fuxiops_home)}
    res = subprocess.run([sys.executable, "-m", "fuxiops.cli.main", "stack", "check", "api", "--no-connect"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "FUXIOPS_API__ADMIN_KEY_SHA256" in res.stderr and "Traceback" not in res.stderr


def test_stack_preflight_refuses_before_starting_anything(fuxiops_home: Path) -> None:
    (fuxiops_home / "state").write_text("a file where a folder belongs")
    stack = Stack(load_config(), echo=lambda m: None)
    with pytest.raises(ConfigError, match=r"the stack refuses to start:\n  setting data.state"):
        stack.up()
    assert not (fuxiops_home / "stack" / "state.json").exists()


def test_stop_group_stops_children_and_grandchildren(tmp_path: Path) -> None:
    # A shell that starts a background grandchild: both must go when the group is stopped.
    script = "sleep 300 & echo $! > child.pid; wait"
    rec = spawn(["sh", "-c", script], dict(os.environ), tmp_path / "log", cwd=tmp_path)
    wait_ready("child", lambda: (tmp_path / "child.pid").exists() and (tmp_path / "child.pid").read_text().strip()
               != "", timeout=20, rec=rec)
    child = int((tmp_path / "child.pid").read_text())
    assert is_alive(rec)
    assert stop_group(rec, timeout=10)
    assert not is_alive(rec)
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split(")")[1][:3]


def test_a_recycled_pid_is_never_signalled(tmp_path: Path) -> None:
    victim = subprocess.Popen(["sleep", "60"])
    try:
        # Same pid, different start time: a record of an older process that had this pid.
        fake = ProcessRecord(pid=victim.pid, start_ticks=1, argv=["old"], log=str(tmp_path / "log"), pgid=victim.pid)
        assert not is_alive(fake)
        assert stop_group(fake) is False
        assert victim.poll() is None, "a process that the stack did not start was signalled"
    finally:
        victim.kill()
        victim.wait()


def test_wait_ready_reports_an_early_exit_with_the_log(tmp_path: Path) -> None:
    rec = spawn(["sh", "-c", "echo 'bad setting XYZ'; exit 3"], dict(os.environ), tmp_path / "svc.log")
    with pytest.raises(StackError, match=r"exited \(code 3\)[\s\S]*bad setting XYZ"):
        wait_ready("svc", lambda: False, timeout=20, rec=rec)


def test_wait_ready_is_bounded(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(StackError, match="not ready after 1 s"):
        wait_ready("never", lambda: False, timeout=1, interval=0.1)
    assert time.monotonic() - t0 < 5


def test_state_file_round_trip_and_corruption(tmp_path: Path) -> None:
    st = StackState(tmp_path / "state.json", ports={"api": 1234},
                    services={"api": ProcessRecord(pid=1, start_ticks=2, argv=["x"], log="l", pgid=1)})
    st.save()
    assert oct(os.stat(st.path).st_mode & 0o777) == "0o600"
    back = StackState.load(st.path)
    assert back.ports == {"api": 1234} and back.services["api"].argv == ["x"]
    st.path.write_text("{broken")
    with pytest.raises(StackError, match="corrupt"):
        StackState.load(st.path)


def test_stack_env_points_every_service_at_the_stack(fuxiops_home: Path) -> None:
    stack = Stack(load_config(), echo=lambda m: None)
    stack.root.mkdir(parents=True)
    state = StackState(stack.root / "state.json", ports={"postgres": 5999, "prefect-server": 4999,
                                                          "dask-scheduler": 8999})
    env = stack.env(state)
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4999/api"
    assert env["FUXIOPS_DATA__CATALOG_URL"].startswith("postgresql+psycopg://fuxiops:")
    assert env["FUXIOPS_DATA__CATALOG_URL"].endswith("@127.0.0.1:5999/fuxiops")
    assert env["FUXIOPS_DASK__SCHEDULER_ADDRESS"] == "tcp://127.0.0.1:8999"
    digests = json.loads(env["FUXIOPS_API__ADMIN_KEY_SHA256"])
    secrets = json.loads((stack.root / "secrets.json").read_text())
    import hashlib

    assert digests == [hashlib.sha256(secrets["admin_key"].encode()).hexdigest()]
    assert oct(os.stat(stack.root / "secrets.json").st_mode & 0o777) == "0o600"
    assert env["FUXIOPS_REPO"] == str(REPO)


def test_healthcheck_endpoints() -> None:
    assert endpoint("api", {"FUXIOPS_API__PORT": "9000"}) == "http://127.0.0.1:9000/health"
    assert endpoint("prefect-server", {}) == "http://127.0.0.1:4200/api/health"
    assert endpoint("prefect-worker", {}) == "http://127.0.0.1:8080/health"
    with pytest.raises(SystemExit):
        endpoint("nope", {})
    res = subprocess.run([sys.executable, "-m", "fuxiops.pipeline.stack.healthcheck", "api"],
                         env={**os.environ, "FUXIOPS_API__PORT": "1"}, capture_output=True, text=True, timeout=30)
    assert res.returncode == 1 and "unreachable" in res.stderr


def test_wrong_postgres_settings_are_named(tmp_path: Path) -> None:
    from fuxiops.pipeline.stack.postgres import Cluster, find_bindir

    with pytest.raises(StackError, match="FUXIOPS_STACK_PG_BINDIR"):
        find_bindir(str(tmp_path))
    if os.geteuid() == 0:
        with pytest.raises(StackError, match="FUXIOPS_STACK_PG_OS_USER: OS user 'no-such-user-x'"):
            Cluster.create(tmp_path, None, "no-such-user-x")


def test_busy_configured_port_is_refused_by_name(fuxiops_home: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        from fuxiops.pipeline.stack.settings import StackSettings

        stack = Stack(load_config(), settings=StackSettings(api_port=port), echo=lambda m: None)
        stack.root.mkdir(parents=True)
        with pytest.raises(StackError, match=f"port {port} for api is already in use.*FUXIOPS_STACK_API_PORT"):
            stack._port(StackState(stack.root / "state.json"), "api", port)
