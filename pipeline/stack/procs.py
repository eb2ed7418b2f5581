"""Process bookkeeping for the native stack: start detached, recognise, wait for, and stop process groups.

Every service runs in its own session (``start_new_session``), so its process
group id equals its pid and stopping it also stops its children (uvicorn
workers, Prefect flow-run processes, Dask worker processes). A pid is only
trusted together with its kernel start time, so a recycled pid is never
signalled.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fuxiops.errors import FuxiopsError


class StackError(FuxiopsError):
    """A stack service could not be started, found or stopped."""


@dataclass
class ProcessRecord:
    """What the state file remembers about one started process."""

    pid: int
    start_ticks: int
    """Kernel start time (``/proc/PID/stat`` field 22): identifies the process together with the pid."""
    argv: list[str]
    log: str
    pgid: int | None = None
    """Process group to signal; None when the process is not a group leader we own (e.g. the postmaster)."""

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, object]) -> "ProcessRecord":
        return cls(**d)  # type: ignore[arg-type]


def start_ticks(pid: int) -> int | None:
    """The kernel start time of ``pid`` or None if it does not exist (or is a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = raw[raw.rindex(")") + 2:].split()
    if rest[0] == "Z":
        return None
    return int(rest[19])


def is_alive(rec: ProcessRecord) -> bool:
    """True when the recorded process still runs (same pid and same start time)."""
    return start_ticks(rec.pid) == rec.start_ticks


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def tail(path: str | Path, lines: int = 25) -> str:
    """The last lines of a log file (for error messages)."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def spawn(argv: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path | None = None) -> ProcessRecord:
    """Start ``argv`` in a new session with stdout and stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} start: {' '.join(argv)}\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(list(argv), env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True, close_fds=True)
        except FileNotFoundError as e:
            raise StackError(f"cannot start {argv[0]!r}: {e.strerror}; is it installed and on PATH?") from None
    ticks = start_ticks(proc.pid)
    if ticks is None:  # exited at once; keep a record so the caller reports the log
        ticks = -1
    # Popen objects are dropped on purpose: the stack outlives this command. Reaping is the
    # caller's concern only while it waits (see wait_ready).
    _CHILDREN[proc.pid] = proc
    return ProcessRecord(pid=proc.pid, start_ticks=ticks, argv=list(argv), log=str(log), pgid=proc.pid)


#: Popen handles of processes started by this command, so that exited ones are reaped (not left as zombies).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def exited(rec: ProcessRecord) -> int | None:
    """The exit code if the process has exited, else None."""
    child = _CHILDREN.get(rec.pid)
    if child is not None:
        return child.poll()
    return None if is_alive(rec) else -1


def wait_ready(name: str, check: Callable[[], bool], timeout: float, rec: ProcessRecord | None = None,
               interval: float = 0.5) -> None:
    """Poll ``check`` until it is true; fail early if the process exits, and after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if rec is not None:
            code = exited(rec)
            if code is not None:
                raise StackError(f"{name} exited (code {code}) before it was ready; last lines of {rec.log}:\n"
                                 f"{tail(rec.log)}")
        try:
            if check():
                return
        except (AttributeError, NameError, TypeError, KeyError):
            raise  # a bug in the check, not a service that is still starting
        except Exception:  # noqa: BLE001 - refused connections, 5xx, half-written files: "not ready yet"
            pass
        if time.monotonic() > deadline:
            where = f"; last lines of {rec.log}:\n{tail(rec.log)}" if rec else ""
            raise StackError(f"{name} was not ready after {timeout:.0f} s{where}")
        time.sleep(interval)


def stop_group(rec: ProcessRecord, timeout: float = 20.0) -> bool:
    """SIGTERM the recorded process group, then SIGKILL after ``timeout``; False if it was already gone."""
    if not is_alive(rec) or rec.pgid is None:
        return False
    try:
        os.killpg(rec.pgid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child = _CHILDREN.get(rec.pid)
        if child is not None:
            child.poll()
        if not is_alive(rec) and not _group_exists(rec.pgid):
            return True
        time.sleep(0.2)
    try:
        os.killpg(rec.pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child = _CHILDREN.get(rec.pid)
    if child is not None:
        child.wait(timeout=5)
    return True


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) succeeds for zombies too: look for a live member.
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        rest = raw[raw.rindex(")") + 2:].split()
        if int(rest[2]) == pgid and rest[0] != "Z":
            return True
    return False


@dataclass
class RunCommand:
    """A short command run to completion (initdb, createdb, work-pool create, deploy)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None

    def run(self, what: str, timeout: float = 120.0, log: Path | None = None) -> str:
        try:
            res = subprocess.run(self.argv, env=self.env or None, cwd=self.cwd, capture_output=True, text=True,
                                 timeout=timeout, stdin=subprocess.DEVNULL)
        except FileNotFoundError as e:
            raise StackError(f"{what}: cannot run {self.argv[0]!r}: {e.strerror}") from None
        except subprocess.TimeoutExpired:
            raise StackError(f"{what}: {' '.join(self.argv)} did not finish within {timeout:.0f} s") from None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as f:
                f.write(f"\n=== {' '.join(self.argv)} (exit {res.returncode})\n{res.stdout}{res.stderr}")
        if res.returncode != 0:
            out = (res.stdout + res.stderr).strip().splitlines()[-25:]
            raise StackError(f"{what} failed (exit {res.returncode}): {' '.join(self.argv)}\n" + "\n".join(out))
        return res.stdout
