"""A private PostgreSQL cluster for the native stack (Debian's PostgreSQL binaries, initdb + pg_ctl).

The cluster lives in ``{stack}/pg``, listens on 127.0.0.1 only (no Unix
socket, so it never collides with a system cluster), uses scram-sha-256
passwords and holds two databases: ``prefect`` (Prefect server) and
``fuxiops`` (the run catalog). PostgreSQL refuses to run as root, so when the
stack runs as root the cluster belongs to an unprivileged OS user
(``postgres`` by default) and every pg command runs as that user.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from fuxiops.pipeline.stack.procs import ProcessRecord, RunCommand, StackError, start_ticks, wait_ready

DATABASES = ("prefect", "fuxiops")
SUPERUSER = "fuxiops"


def find_bindir(configured: str | None) -> Path:
    """The folder holding initdb and pg_ctl."""
    if configured:
        bindir = Path(configured)
        if not (bindir / "initdb").exists():
            raise StackError(f"setting FUXIOPS_STACK_PG_BINDIR: {bindir} has no initdb")
        return bindir
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
                      if p.parts[-3].isdigit() else 0)
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise StackError("PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH); "
                     "install them with `apt-get install -y postgresql` or set FUXIOPS_STACK_PG_BINDIR")


@dataclass
class Cluster:
    """One PostgreSQL data folder and how to run commands on it."""

    datadir: Path
    bindir: Path
    os_user: str | None
    """Run pg commands as this OS user (when we are root); None: as ourselves."""

    @classmethod
    def create(cls, root: Path, bindir: str | None, os_user: str) -> "Cluster":
        user = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(os_user)
            except KeyError:
                raise StackError(f"setting FUXIOPS_STACK_PG_OS_USER: OS user {os_user!r} does not exist; PostgreSQL "
                                 "cannot run as root (create the user or install the postgresql package)") from None
            user = os_user
        return cls(datadir=root / "pg", bindir=find_bindir(bindir), os_user=user)

    # -- running pg commands -------------------------------------------------
    def _cmd(self, tool: str, *args: str) -> RunCommand:
        argv = [str(self.bindir / tool), *args]
        if self.os_user:
            argv = ["runuser", "-u", self.os_user, "--", *argv]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        return RunCommand(argv, env=env, cwd=Path("/"))

    def _check_reachable(self) -> None:
        """The cluster's OS user must be able to enter every parent of the data folder."""
        if not self.os_user:
            return
        probe = RunCommand(["runuser", "-u", self.os_user, "--", "test", "-w", str(self.datadir)], cwd=Path("/"))
        try:
            probe.run("check access")
        except StackError:
            raise StackError(f"the OS user {self.os_user!r} that runs PostgreSQL cannot reach {self.datadir}: "
                             "its parent folders must be enterable by that user (chmod o+x), or set FUXIOPS_STACK_ROOT "
                             "to a folder it can reach") from None

    @property
    def initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def init(self, password: str, log: Path) -> None:
        """initdb with a password-protected superuser; the folder is owned by the cluster's OS user."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        if self.os_user:
            pw = pwd.getpwnam(self.os_user)
            os.chown(self.datadir, pw.pw_uid, pw.pw_gid)
            # The stack folder (its parent) must be enterable to reach the data folder; nothing secret lies there.
            self._check_reachable()
        os.chmod(self.datadir, 0o700)
        pwfile = self.datadir.parent / ".pgpass-init"
        pwfile.write_text(password + "\n")
        try:
            if self.os_user:
                pw = pwd.getpwnam(self.os_user)
                os.chown(pwfile, pw.pw_uid, pw.pw_gid)
            os.chmod(pwfile, 0o600)
            self._cmd("initdb", "-D", str(self.datadir), "-U", SUPERUSER, f"--pwfile={pwfile}",
                      "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8",
                      "--locale=C.UTF-8").run("initdb", timeout=180, log=log)
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self, host: str, port: int, log: Path, timeout: float) -> ProcessRecord:
        """pg_ctl start on host:port; returns the postmaster's record."""
        if self.os_user:
            pw = pwd.getpwnam(self.os_user)
            log.parent.mkdir(parents=True, exist_ok=True)
            log.touch()
            os.chown(log, pw.pw_uid, pw.pw_gid)
        opts = f"-c listen_addresses={host} -c port={port} -c unix_socket_directories='' -c max_connections=200"
        self._cmd("pg_ctl", "start", "-D", str(self.datadir), "-l", str(log), "-w", "-t", str(int(timeout)),
                  "-o", opts).run("PostgreSQL start", timeout=timeout + 10, log=log.with_suffix(".ctl.log"))
        pid = self.postmaster_pid()
        if pid is None:
            raise StackError(f"PostgreSQL started but {self.datadir}/postmaster.pid is missing")
        ticks = start_ticks(pid)
        return ProcessRecord(pid=pid, start_ticks=ticks if ticks is not None else -1,
                             argv=[str(self.bindir / "postgres"), "-D", str(self.datadir)], log=str(log), pgid=None)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def stop(self, timeout: float = 60.0) -> None:
        if self.postmaster_pid() is None:
            return
        self._cmd("pg_ctl", "stop", "-D", str(self.datadir), "-m", "fast", "-w", "-t", str(int(timeout))).run(
            "PostgreSQL stop", timeout=timeout + 10)


def url(password: str, host: str, port: int, database: str, driver: str = "psycopg") -> str:
    """SQLAlchemy URL of one of the stack's databases."""
    return f"postgresql+{driver}://{SUPERUSER}:{password}@{host}:{port}/{database}"


def ensure_databases(password: str, host: str, port: int, timeout: float) -> None:
    """Create the stack's databases if missing (idempotent)."""
    import psycopg

    conninfo = f"host={host} port={port} user={SUPERUSER} password={password} dbname=postgres connect_timeout=5"

    def _ready() -> bool:
        with psycopg.connect(conninfo):
            return True

    wait_ready("PostgreSQL", _ready, timeout)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        have = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
        for db in DATABASES:
            if db not in have:
                conn.execute(f'CREATE DATABASE "{db}"')


def new_password() -> str:
    return secrets.token_urlsafe(24)
