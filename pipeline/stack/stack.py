"""Start, stop and report the native stack's services, remembering what was started in a state file.

Order: PostgreSQL -> Prefect server -> Dask scheduler -> Dask worker(s) ->
Prefect worker (after the work pool and the deployments are registered) ->
API. Each step waits, bounded, until its service answers. ``down`` stops only
the processes recorded in the state file (pid + start time), newest first.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fuxiops.config import DataConfig, FuxiopsConfig
from fuxiops.pipeline.stack import postgres
from fuxiops.pipeline.stack.preflight import check_api_keys, check_catalog_url, check_dask, check_storage
from fuxiops.pipeline.stack.procs import (ProcessRecord, RunCommand, StackError, free_port, is_alive, port_in_use,
                                          spawn, stop_group, wait_ready)
from fuxiops.pipeline.stack.settings import SERVICES, WORK_POOL, StackSettings
from fuxiops.pipeline.stack.stack_paths import API_HEALTH, deployment_files, source_root


def _tool(name: str) -> str:
    """A console script of this environment (next to the interpreter), else from PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if not found:
        raise StackError(f"{name!r} is not installed in this environment (pip install 'fuxiops[ops]')")
    return found


def _http_ok(url: str, timeout: float = 3.0) -> bool:
    import httpx

    return httpx.get(url, timeout=timeout).status_code == 200


@dataclass
class StackState:
    """The state file: ports chosen once, secrets, and the processes now running."""

    path: Path
    ports: dict[str, int] = field(default_factory=dict)
    services: dict[str, ProcessRecord] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "StackState":
        if not path.exists():
            return cls(path)
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise StackError(f"stack state file {path} is corrupt ({e}); stop leftover processes by hand "
                             "and delete it") from None
        return cls(path, ports=raw.get("ports", {}),
                   services={k: ProcessRecord.from_json(v) for k, v in raw.get("services", {}).items()},
                   info=raw.get("info", {}))

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"ports": self.ports, "info": self.info,
                                   "services": {k: v.to_json() for k, v in self.services.items()}}, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)


class Stack:
    """The native stack of one fuxiops home (``{home}/stack``)."""

    def __init__(self, cfg: FuxiopsConfig, config_path: Path | None = None,
                 settings: StackSettings | None = None, echo: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.config_path = config_path.resolve() if config_path else None
        self.settings = settings or StackSettings()
        self.root = self.settings.stack_root(cfg.home)
        self.logs = self.root / "logs"
        self.echo = echo
        self.host = self.settings.host

    # -- state and secrets ---------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[StackState]:
        """Hold the stack lock (one ``stack`` command at a time) and save the state afterwards."""
        self.root.mkdir(parents=True, exist_ok=True)
        # PostgreSQL's OS user must traverse the stack folder to reach pg/; nothing secret is world-readable.
        os.chmod(self.root, 0o711)
        with open(self.root / ".lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StackError(f"another `fuxiops stack` command is running on {self.root}") from None
            state = StackState.load(self.root / "state.json")
            try:
                yield state
            finally:
                state.save()

    def secrets(self) -> dict[str, str]:
        """Stack secrets (PostgreSQL password, generated admin key), created once, mode 600."""
        path = self.root / "secrets.json"
        data: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        changed = False
        if "pg_password" not in data:
            data["pg_password"], changed = postgres.new_password(), True
        if "admin_key" not in data:
            data["admin_key"], changed = secrets.token_urlsafe(32), True
        if changed:
            path.write_text(json.dumps(data, indent=2))
            os.chmod(path, 0o600)
        return data

    def _port(self, state: StackState, name: str, wanted: int | None) -> int:
        """The service's port: recorded, configured (must be free) or a free one."""
        if name in state.ports:
            return state.ports[name]
        if wanted:
            if port_in_use(wanted, self.host):
                setting = "api.port (FUXIOPS_API__PORT) or FUXIOPS_STACK_API_PORT" if name == "api" else \
                    f"FUXIOPS_STACK_{name.upper().replace('-', '_')}_PORT"
                raise StackError(f"port {wanted} for {name} is already in use on {self.host}; change {setting}")
            port = wanted
        else:
            port = free_port(self.host)
        state.ports[name] = port
        return port

    # -- environment shared by the services ------------------------------------
    def _uses_stack_catalog(self) -> bool:
        return self.cfg.data.catalog_url == DataConfig().catalog_url

    def env(self, state: StackState) -> dict[str, str]:
        sec = self.secrets()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update({
            "FUXIOPS_HOME": str(Path(self.cfg.home).expanduser().resolve()),
            "PREFECT_HOME": str(self.root / "prefect"),
            "PREFECT_API_URL": self.prefect_api(state),
            # Working directory of flow runs (the deployment specs' pull step): the source tree.
            "FUXIOPS_REPO": str(source_root()),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
            "PREFECT_LOCAL_STORAGE_PATH": str(self.root / "prefect" / "results"),
            # On SIGTERM (the worker being stopped) a flow run leaves its state alone instead of marking
            # itself Crashed; the next worker start finds it Running without a process and reschedules it
            # (`recover_orphans`), so the cycle completes.
            "PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR": "reschedule",
        })
        if "dask-scheduler" in state.ports:
            env["FUXIOPS_DASK__SCHEDULER_ADDRESS"] = f"tcp://{self.host}:{state.ports['dask-scheduler']}"
        if self.config_path:
            env["FUXIOPS_CONFIG"] = str(self.config_path)
        else:
            env.pop("FUXIOPS_CONFIG", None)
        if self._uses_stack_catalog() and "postgres" in state.ports:
            env["FUXIOPS_DATA__CATALOG_URL"] = postgres.url(sec["pg_password"], self.host, state.ports["postgres"],
                                                            "fuxiops")
        if not self.cfg.api.admin_key_sha256:
            env["FUXIOPS_API__ADMIN_KEY_SHA256"] = json.dumps([hashlib.sha256(sec["admin_key"].encode()).hexdigest()])
        return env

    def prefect_api(self, state: StackState) -> str:
        return f"http://{self.host}:{state.ports.get('prefect-server', '-')}/api"

    def api_url(self, state: StackState) -> str:
        return f"http://{self.host}:{state.ports.get('api', '-')}"

    # -- preflight -------------------------------------------------------------
    def preflight(self) -> None:
        """Refuse to start on wrong settings, naming each (nothing has been started yet)."""
        from fuxiops.errors import ConfigError

        problems = check_storage(self.cfg) + check_api_keys(self.cfg, require_admin=False) + check_dask(self.cfg)
        if not self._uses_stack_catalog():
            problems += check_catalog_url(self.cfg, connect=True)
        if problems:
            raise ConfigError("the stack refuses to start:\n  " + "\n  ".join(problems))

    # -- up ----------------------------------------------------------------------
    def up(self, services: Sequence[str] = SERVICES) -> dict[str, Any]:
        unknown = [s for s in services if s not in SERVICES]
        if unknown:
            raise StackError(f"unknown service(s) {', '.join(unknown)}; allowed: {', '.join(SERVICES)}")
        self.preflight()
        with self.locked() as state:
            for name in SERVICES:  # always in dependency order
                if name not in services:
                    continue
                rec = state.services.get(name)
                if rec is not None and is_alive(rec):
                    self.echo(f"{name}: already running (pid {rec.pid})")
                    continue
                t0 = time.monotonic()
                try:
                    getattr(self, "_start_" + name.replace("-", "_"))(state)
                except BaseException:
                    # Do not leave a half-started service behind (nor recorded as running).
                    self._stop_one(state, name)
                    raise
                state.save()
                self.echo(f"{name}: ready in {time.monotonic() - t0:.1f} s (pid {state.services[name].pid})")
            return self._summary(state)

    def _start_postgres(self, state: StackState) -> None:
        sec = self.secrets()
        cluster = postgres.Cluster.create(self.root, self.settings.pg_bindir, self.settings.pg_os_user)
        log = self.logs / "postgres.log"
        if not cluster.initialised:
            self.echo(f"postgres: initdb {cluster.datadir}")
            cluster.init(sec["pg_password"], self.logs / "postgres.init.log")
        stale = cluster.postmaster_pid()
        if stale is not None and not Path(f"/proc/{stale}").exists():
            (cluster.datadir / "postmaster.pid").unlink()  # left by a crash; pg_ctl would refuse to start
        port = self._port(state, "postgres", self.settings.pg_port)
        rec = cluster.start(self.host, port, log, self.settings.ready_timeout)
        state.services["postgres"] = rec
        postgres.ensure_databases(sec["pg_password"], self.host, port, self.settings.ready_timeout)

    def _start_prefect_server(self, state: StackState) -> None:
        sec = self.secrets()
        port = self._port(state, "prefect-server", self.settings.prefect_port)
        if "postgres" not in state.ports:
            raise StackError("prefect-server needs postgres: run `fuxiops stack up` (all services) first")
        env = self.env(state)
        env.update({
            "PREFECT_API_DATABASE_CONNECTION_URL": postgres.url(sec["pg_password"], self.host, state.ports["postgres"],
                                                                "prefect", driver="asyncpg"),
            "PREFECT_SERVER_API_HOST": self.host,
            "PREFECT_SERVER_API_PORT": str(port),
        })
        argv = [_tool("prefect"), "server", "start", "--host", self.host, "--port", str(port),
                "--ui" if self.settings.prefect_ui else "--no-ui", "--analytics-off"]
        rec = spawn(argv, env, self.logs / "prefect-server.log", cwd=self.root)
        state.services["prefect-server"] = rec
        wait_ready("prefect-server", lambda: _http_ok(f"http://{self.host}:{port}/api/health"),
                   self.settings.ready_timeout, rec)

    def _start_dask_scheduler(self, state: StackState) -> None:
        port = self._port(state, "dask-scheduler", self.settings.dask_port)
        dash = self._port(state, "dask-dashboard", self.settings.dask_dashboard_port)
        argv = [_tool("dask"), "scheduler", "--host", self.host, "--port", str(port),
                "--dashboard-address", f"{self.host}:{dash}"]
        rec = spawn(argv, self.env(state), self.logs / "dask-scheduler.log", cwd=self.root)
        state.services["dask-scheduler"] = rec
        wait_ready("dask-scheduler", lambda: port_in_use(port, self.host) and
                   _http_ok(f"http://{self.host}:{dash}/health"), self.settings.ready_timeout, rec)

    def _dask_workers(self, state: StackState) -> int:
        import httpx

        text = httpx.get(f"http://{self.host}:{state.ports['dask-dashboard']}/metrics", timeout=3).text
        total = 0
        for line in text.splitlines():
            if line.startswith("dask_scheduler_workers{"):
                total += int(float(line.rsplit(" ", 1)[1]))
        return total

    def _start_dask_worker(self, state: StackState) -> None:
        if "dask-scheduler" not in state.ports:
            raise StackError("dask-worker needs dask-scheduler: run `fuxiops stack up` (all services) first")
        s = self.settings
        argv = [_tool("dask"), "worker", f"tcp://{self.host}:{state.ports['dask-scheduler']}", "--host", self.host,
                "--nworkers", str(s.dask_workers), "--nthreads", str(s.dask_threads),
                "--memory-limit", s.dask_memory_limit, "--no-dashboard",
                "--local-directory", str(self.root / "dask")]
        rec = spawn(argv, self.env(state), self.logs / "dask-worker.log", cwd=self.root)
        state.services["dask-worker"] = rec
        wait_ready("dask-worker", lambda: self._dask_workers(state) >= s.dask_workers, s.ready_timeout, rec)

    def register(self, state: StackState) -> list[str]:
        """Create the process work pool and register every deployment spec (idempotent).

        Skipped when the same spec files (by content) were registered on this server before and all
        their deployments are still there, so that restarting the worker is quick.
        """
        files = deployment_files(self.settings.deployments)
        digest = _digest(files)
        if state.info.get("deployments_digest") == digest and self._deployments_present(state, files):
            return [str(f) for f in files]
        done = register_deployments(self.env(state), files, self.logs / "prefect-register.log")
        state.info["deployments_digest"] = digest
        return done

    def _deployments_present(self, state: StackState, files: list[Path]) -> bool:
        import httpx
        import yaml

        names = [d["name"] for f in files for d in (yaml.safe_load(f.read_text()) or {}).get("deployments", [])]
        r = httpx.post(f"{self.prefect_api(state)}/deployments/filter",
                       json={"deployments": {"name": {"any_": names}}}, timeout=10)
        return r.status_code == 200 and {d["name"] for d in r.json()} >= set(names)

    def _worker_online(self, state: StackState, name: str, rec: ProcessRecord) -> bool:
        """The worker announced itself: its start line in this start's log, or a heartbeat newer than its start.

        (A worker of the same name that just stopped stays ONLINE on the server for a while, hence the time.)
        """
        import httpx

        log = Path(rec.log).read_text(errors="replace")
        if f"Worker '{name}' started!" in log[log.rfind("=== "):]:
            return True
        r = httpx.post(f"{self.prefect_api(state)}/work_pools/{WORK_POOL}/workers/filter", json={}, timeout=5)
        for w in r.json():
            beat = (w.get("last_heartbeat_time") or "")[:19]
            if w.get("name") == name and w.get("status") == "ONLINE" and beat > state.info.get("worker_started", "~"):
                return True
        return False

    def recover_orphans(self, state: StackState) -> list[str]:
        """Reschedule flow runs a stopped worker left behind (see ``recover_orphans``)."""
        return recover_orphans(self.prefect_api(state), WORK_POOL, self.echo)

    def _start_prefect_worker(self, state: StackState) -> None:
        if "prefect-server" not in state.ports:
            raise StackError("prefect-worker needs prefect-server: run `fuxiops stack up` (all services) first")
        state.info["deployments"] = self.register(state)
        self.recover_orphans(state)
        name = "fuxiops-stack-worker"
        argv = [_tool("prefect"), "worker", "start", "--pool", WORK_POOL, "--type", "process", "--name", name,
                "--limit", str(self.settings.worker_limit)]
        state.info["worker_started"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        rec = spawn(argv, self.env(state), self.logs / "prefect-worker.log", cwd=source_root())
        state.services["prefect-worker"] = rec
        wait_ready("prefect-worker", lambda: self._worker_online(state, name, rec), self.settings.ready_timeout, rec)

    def _start_api(self, state: StackState) -> None:
        port = self._port(state, "api", self.cfg.api.port if self.settings.api_port is None else self.settings.api_port)
        env = self.env(state)
        env.pop("FUXIOPS_DATA__CATALOG_URL", None)  # the API reads manifests; it needs no database password
        workers = self.settings.api_workers or self.cfg.api.workers
        env.update({"FUXIOPS_API__HOST": self.host, "FUXIOPS_API__PORT": str(port),
                    "FUXIOPS_API__WORKERS": str(workers)})
        # Several uvicorn workers share their Prometheus metrics through files; start from an empty folder.
        prom = self.root / "prometheus"
        shutil.rmtree(prom, ignore_errors=True)
        prom.mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
        argv = [_tool("fuxiops"), "serve", "--host", self.host, "--port", str(port), "--workers", str(workers)]
        rec = spawn(argv, env, self.logs / "api.log", cwd=self.root)
        state.services["api"] = rec
        wait_ready("api", lambda: _http_ok(f"http://{self.host}:{port}{API_HEALTH}"), self.settings.ready_timeout, rec)

    # -- down ----------------------------------------------------------------------
    def down(self, services: Sequence[str] = SERVICES) -> list[str]:
        unknown = [s for s in services if s not in SERVICES]
        if unknown:
            raise StackError(f"unknown service(s) {', '.join(unknown)}; allowed: {', '.join(SERVICES)}")
        stopped: list[str] = []
        with self.locked() as state:
            for name in reversed(SERVICES):
                if name not in services or name not in state.services:
                    continue
                if self._stop_one(state, name):
                    stopped.append(name)
                state.save()
                self.echo(f"{name}: stopped" if name in stopped else f"{name}: was not running")
        return stopped

    def _stop_one(self, state: StackState, name: str) -> bool:
        """Stop a recorded service and forget it; False if it was not running."""
        rec = state.services.pop(name, None)
        if rec is None:
            return False
        if name == "postgres":
            if not is_alive(rec):
                return False
            postgres.Cluster.create(self.root, self.settings.pg_bindir, self.settings.pg_os_user).stop()
            return True
        return stop_group(rec)

    # -- status ----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        state = StackState.load(self.root / "state.json")
        return self._summary(state)

    def _summary(self, state: StackState) -> dict[str, Any]:
        urls = {
            "postgres": f"postgresql://{postgres.SUPERUSER}@{self.host}:{state.ports.get('postgres', '-')}",
            "prefect-server": self.prefect_api(state),
            "dask-scheduler": f"tcp://{self.host}:{state.ports.get('dask-scheduler', '-')}",
            "dask-worker": f"http://{self.host}:{state.ports.get('dask-dashboard', '-')}/status",
            "prefect-worker": f"work pool {WORK_POOL}",
            "api": self.api_url(state),
        }
        services = {}
        for name in SERVICES:
            rec = state.services.get(name)
            services[name] = {"running": bool(rec and is_alive(rec)), "pid": rec.pid if rec else None,
                              "address": urls[name], "log": rec.log if rec else str(self.logs / f"{name}.log")}
        return {"root": str(self.root), "ports": dict(state.ports), "services": services,
                "prefect_api_url": self.prefect_api(state), "api_url": self.api_url(state),
                "deployments": state.info.get("deployments", []),
                "secrets": str(self.root / "secrets.json")}



def register_deployments(env: dict[str, str], files: list[Path], log: Path | None = None) -> list[str]:
    """Create the stack's process work pool and ``prefect deploy --all`` each spec, run from the source tree.

    Idempotent: the pool is overwritten with the same settings and deployments are upserted by name.
    The specs are deployed in parallel (each ``prefect deploy`` spends most of its time importing flows).
    """
    import subprocess

    prefect = _tool("prefect")
    root = source_root()
    RunCommand([prefect, "work-pool", "create", env.get("FUXIOPS_WORK_POOL", WORK_POOL), "--type", "process",
                "--overwrite"], env, root).run("creating the Prefect work pool", log=log)
    procs = [(spec, subprocess.Popen([prefect, "--no-prompt", "deploy", "--all", "--prefect-file", str(spec)],
                                     env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     stdin=subprocess.DEVNULL)) for spec in files]
    failures = []
    for spec, proc in procs:
        try:
            out, _ = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            failures.append(f"registering {spec}: did not finish within 300 s")
            continue
        if log is not None:
            with open(log, "a") as f:
                f.write(f"\n=== prefect deploy --all --prefect-file {spec} (exit {proc.returncode})\n{out}")
        if proc.returncode != 0:
            tail_lines = "\n".join(out.strip().splitlines()[-20:])
            failures.append(f"registering the deployments of {spec} failed (exit {proc.returncode}):\n{tail_lines}")
    if failures:
        raise StackError("\n".join(failures))
    return [str(f) for f in files]


def _digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(str(f).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def recover_orphans(api: str, pool: str = WORK_POOL, echo: Callable[[str], None] = print) -> list[str]:
    """Reschedule flow runs of ``pool`` left Running/Pending by a worker that is gone.

    A stopped process worker takes its flow-run processes down with it, but the
    server still shows them Running. Called where the pool's only worker starts
    (the stack; the single-replica worker container), every flow-run process of
    the pool runs on this host, so a Running run whose process no longer exists
    is an orphan: it is set back to Scheduled and the new worker runs it again
    (tasks already done come from their persisted results through the cycle's
    cache keys). A run being cancelled is marked Cancelled.
    """
    import httpx

    body = {"flow_runs": {"state": {"type": {"any_": ["RUNNING", "PENDING", "CANCELLING"]}}},
            "work_pools": {"name": {"any_": [pool]}}}
    runs = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10).json()
    rescheduled = []
    for run in runs:
        pid = str(run.get("infrastructure_pid") or "").rpartition(":")[2]
        if pid.isdigit() and _is_prefect_process(int(pid)):
            continue  # its process still runs (e.g. finishing after the worker left)
        if run["state_type"] == "CANCELLING":
            new = {"type": "CANCELLED", "name": "Cancelled", "message": "its worker stopped while cancelling"}
        else:
            new = {"type": "SCHEDULED", "name": "Scheduled",
                   "message": "rescheduled: its worker was stopped mid-run"}
        r = httpx.post(f"{api}/flow_runs/{run['id']}/set_state", json={"state": new, "force": True}, timeout=10)
        r.raise_for_status()
        rescheduled.append(str(run["id"]))
        echo(f"flow run {run['name']} ({run['id']}) was orphaned -> {new['type']}")
    return rescheduled


def _is_prefect_process(pid: int) -> bool:
    """True if ``pid`` runs and is a Prefect flow-run process (a recycled pid is something else)."""
    try:
        return b"prefect" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
