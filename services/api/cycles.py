"""Triggering a forecast cycle from the API, behind one small interface.

``PrefectTrigger`` asks the Prefect API (``PREFECT_API_URL``) to run the
deployment ``cycle/fuxiops-cycle`` with the cycle time as parameter;
``SubprocessTrigger`` (no Prefect server configured) starts
``fuxiops cycle run --time T`` as a detached child process. The service never
runs a cycle in its own process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol, Sequence

DEPLOYMENT = "cycle/fuxiops-cycle"


@dataclass(frozen=True)
class TriggerResult:
    """What was started: the backend, its id (flow-run id or process id) and the cycle time."""

    backend: str
    id: str
    cycle_time: datetime
    detail: dict[str, str] = field(default_factory=dict)


class CycleTrigger(Protocol):
    """Starts a cycle for time ``T`` and returns at once."""

    name: str

    def trigger(self, cycle_time: datetime) -> TriggerResult: ...


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class PrefectTrigger:
    """Creates a flow run of the cycle deployment through the Prefect REST API.

    Plain HTTP (httpx) rather than the ``prefect`` package, so that the API
    image needs neither prefect nor its dependencies.
    """

    name = "prefect"

    def __init__(self, deployment: str = DEPLOYMENT, api_url: str | None = None, timeout_s: float = 15.0) -> None:
        self.deployment = deployment
        self.api_url = (api_url or os.environ.get("PREFECT_API_URL", "")).rstrip("/")
        self.timeout_s = timeout_s

    def trigger(self, cycle_time: datetime) -> TriggerResult:
        import httpx

        if not self.api_url:
            raise RuntimeError("PREFECT_API_URL is not set")
        flow, _, dep = self.deployment.partition("/")
        headers = {}
        if os.environ.get("PREFECT_API_KEY"):
            headers["Authorization"] = f"Bearer {os.environ['PREFECT_API_KEY']}"
        with httpx.Client(base_url=self.api_url, timeout=self.timeout_s, headers=headers) as client:
            r = client.get(f"/deployments/name/{flow}/{dep}")
            r.raise_for_status()
            dep_id = r.json()["id"]
            r = client.post(f"/deployments/{dep_id}/create_flow_run",
                            json={"parameters": {"time": _iso(cycle_time)}})
            r.raise_for_status()
            run = r.json()
        return TriggerResult(self.name, str(run["id"]), cycle_time,
                             {"deployment": self.deployment, "flow_run_name": str(run.get("name", ""))})


class SubprocessTrigger:
    """Runs ``fuxiops cycle run --time T`` in a child process (logs under ``log_dir``)."""

    name = "subprocess"

    def __init__(self, command: Sequence[str] | None = None, log_dir: Path | None = None,
                 config_path: str | None = None) -> None:
        self.command = list(command) if command else [sys.executable, "-m", "fuxiops.cli.main"]
        self.log_dir = log_dir
        self.config_path = config_path
        #: Children started by this trigger; finished ones are reaped (no zombies) at the next trigger.
        self.children: dict[int, subprocess.Popen[bytes]] = {}

    def reap(self) -> dict[int, int | None]:
        """Exit codes of the children (None while running); finished ones are forgotten after this."""
        status = {pid: p.poll() for pid, p in self.children.items()}
        for pid, code in status.items():
            if code is not None:
                del self.children[pid]
        return status

    def argv(self, cycle_time: datetime) -> list[str]:
        args = list(self.command)
        if self.config_path:
            args += ["--config", self.config_path]
        return args + ["cycle", "run", "--time", _iso(cycle_time)]

    def trigger(self, cycle_time: datetime) -> TriggerResult:
        self.reap()
        argv = self.argv(cycle_time)
        out = subprocess.DEVNULL
        log_path = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"cycle-{cycle_time:%Y%m%d%H}-{os.getpid()}.log"
            out = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, close_fds=True)
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]
        self.children[proc.pid] = proc
        detail = {"command": " ".join(argv[-5:])}
        if log_path is not None:
            detail["log"] = log_path.name
        return TriggerResult(self.name, str(proc.pid), cycle_time, detail)


def default_trigger(config_path: str | None = None, log_dir: Path | None = None) -> CycleTrigger:
    """Prefect when ``PREFECT_API_URL`` is configured, else a subprocess."""
    if os.environ.get("PREFECT_API_URL"):
        return PrefectTrigger()
    return SubprocessTrigger(log_dir=log_dir, config_path=config_path)
