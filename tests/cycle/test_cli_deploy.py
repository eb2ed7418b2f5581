"""CLI of the cycle (status, bad input) and the deployments (schedule with the data cutoff, prefect.yaml)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import cycle_testbed_data as td
from fuxiops.cli import main as cli_main
from fuxiops.pipeline.cycle.deployments import CYCLE_DEPLOYMENT, cycle_cron

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(fuxiops_home: Path) -> CliRunner:
    cli_main._register_groups()
    return CliRunner()


def test_cycle_cron_shifts_by_the_cutoff() -> None:
    assert cycle_cron("0 */6 * * *", 150) == "30 2-23/6 * * *"
    assert cycle_cron("0 */6 * * *", 0) == "0 */6 * * *"
    assert cycle_cron("0 */6 * * *", 360) == "0 */6 * * *"  # a whole period later: same wall-clock times
    assert cycle_cron("15 0,12 * * *", 90) == "45 1,13 * * *"
    assert cycle_cron("0 3-21/6 * * *", 60) == "0 3-21/6 * * *"  # not understood: left for the flow to handle


def test_prefect_yaml_declares_the_deployments() -> None:
    spec = yaml.safe_load((REPO / "deploy" / "prefect.yaml").read_text())
    deps = {d["name"]: d for d in spec["deployments"]}
    assert set(deps) >= {CYCLE_DEPLOYMENT, "fuxiops-backfill", "fuxiops-cold-start"}
    cyc = deps[CYCLE_DEPLOYMENT]
    assert cyc["entrypoint"] == "pipeline/cycle/flows.py:cycle" and cyc["concurrency_limit"] == 1
    from fuxiops.config import ScheduleConfig

    s = ScheduleConfig()
    assert cyc["schedules"][0]["cron"] == cycle_cron(s.cron, s.cutoff_minutes)
    assert cyc["schedules"][0]["timezone"] == "UTC"
    for d in deps.values():  # every entrypoint names a real flow
        path, _, name = d["entrypoint"].partition(":")
        assert (REPO / path).is_file()
        from fuxiops.pipeline.cycle import flows

        assert hasattr(getattr(flows, name), "fn")


def test_runner_deployments(tmp_path: Path) -> None:
    from fuxiops.config import load_config
    from fuxiops.pipeline.cycle.deployments import build_deployments

    cfg = load_config(td.make_home(tmp_path / "h"))
    deps = {d.name: d for d in build_deployments(cfg, "/etc/fuxiops.yaml")}
    cyc = deps[CYCLE_DEPLOYMENT]
    assert cyc.flow_name == "cycle"
    assert cyc.schedules[0].schedule.cron == "30 2-23/6 * * *"
    assert cyc.parameters == {"config_path": "/etc/fuxiops.yaml"}


def test_status_and_bad_input(cli: CliRunner, tmp_path: Path) -> None:
    from fuxiops.config import load_config
    from fuxiops.pipeline.cycle.runs import RunCatalog

    path = td.make_home(tmp_path / "h")
    res = cli.invoke(cli_main.app, ["--config", str(path), "cycle", "status"])
    assert res.exit_code == 0 and "no runs yet" in res.output
    with RunCatalog(load_config(path).catalog_url) as cat:
        cat.start(datetime(2023, 1, 1, 6))
        cat.finish("2023010106", degraded_reasons=["no observations received"],
                   obs_counts={"total": {"read": 0, "used": 0}}, timings={"forecast": 2.0, "publish": 1.0},
                   model={"forecaster": {"preset": "tiny", "weights_sha256": "ab" * 32, "untrained": True}})
        cat.start(datetime(2023, 1, 1, 12))
        cat.fail("2023010112", "DataError: boom")
    res = cli.invoke(cli_main.app, ["--config", str(path), "cycle", "status"])
    assert res.exit_code == 0, res.output
    for text in ("2023010106", "degraded", "2023010112", "failed"):
        assert text in res.output
    res = cli.invoke(cli_main.app, ["--config", str(path), "cycle", "status", "--json"])
    assert res.exit_code == 0 and '"untrained": true' in res.output and '"forecast": 2.0' in res.output
    res = cli.invoke(cli_main.app, ["--config", str(path), "cycle", "status", "--run", "2023010106"])
    assert res.exit_code == 0 and '"no observations received"' in res.output
    # Bad input: a FuxiopsError naming the problem, raised before any Prefect or torch work ...
    from fuxiops.errors import FuxiopsError

    for args, msg in ((["cycle", "status", "--run", "1999"], "no run '1999'"),
                      (["cycle", "run", "--time", "2023-01-01T06", "--cold-start", "guess"],
                       "unknown cold-start source"),
                      (["cycle", "backfill", "--start", "2023-01-02T00", "--end", "2023-01-01T00"],
                       "before its start")):
        res = cli.invoke(cli_main.app, ["--config", str(path), *args])
        assert isinstance(res.exception, FuxiopsError) and msg in str(res.exception), (args, res.output)
    # ... which the CLI turns into exit code 2 and one line, no traceback.
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "fuxiops.cli.main", "--config", str(path), "cycle", "run", "--time",
                        "2023-01-01T05"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "not on the 6-hourly cadence" in p.stderr and "Traceback" not in p.stderr
