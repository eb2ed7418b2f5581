"""Settings of the native stack (``FUXIOPS_STACK_*``): ports, sizes and where PostgreSQL lives.

The deployment itself (grid, data locations, API keys, ...) stays in the
fuxiops configuration; these settings only say how the stack runs it on one
machine. A port of 0 means "pick a free one"; the chosen ports are recorded in
the state file and shown by ``fuxiops stack status``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Services in start order; ``down`` stops them in reverse.
SERVICES: tuple[str, ...] = ("postgres", "prefect-server", "dask-scheduler", "dask-worker", "prefect-worker", "api")

#: The Prefect work pool the stack's worker serves (deploy/prefect.yaml targets it too).
WORK_POOL = "fuxiops"


class StackSettings(BaseSettings):
    """How ``fuxiops stack`` runs the services (environment: ``FUXIOPS_STACK_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="FUXIOPS_STACK_", extra="ignore", frozen=True)

    root: str | None = None
    """Folder of the stack's state, logs and PostgreSQL cluster (default: ``{home}/stack``)."""
    host: str = "127.0.0.1"
    """Address every service binds to."""
    pg_port: int = Field(default=0, ge=0, le=65535)
    """PostgreSQL port (0: a free one)."""
    pg_bindir: str | None = None
    """Folder with initdb/pg_ctl (default: the newest /usr/lib/postgresql/*/bin, else PATH)."""
    pg_os_user: str = "postgres"
    """OS user that owns and runs the PostgreSQL cluster when the stack runs as root."""
    prefect_port: int = Field(default=0, ge=0, le=65535)
    """Prefect server port (0: a free one)."""
    prefect_ui: bool = False
    """Serve the Prefect UI too (slower start)."""
    api_port: int | None = Field(default=None, ge=0, le=65535)
    """API port (default: ``api.port`` of the configuration; 0: a free one)."""
    api_workers: int | None = Field(default=None, ge=1, le=64)
    """Uvicorn worker processes (default: ``api.workers`` of the configuration)."""
    dask_port: int = Field(default=0, ge=0, le=65535)
    """Dask scheduler port (0: a free one)."""
    dask_dashboard_port: int = Field(default=0, ge=0, le=65535)
    """Dask dashboard port (0: a free one)."""
    dask_workers: int = Field(default=1, ge=1, le=64)
    """Dask worker processes."""
    dask_threads: int = Field(default=1, ge=1, le=64)
    """Threads per Dask worker process."""
    dask_memory_limit: str = "2GiB"
    """Memory limit per Dask worker process."""
    worker_limit: int = Field(default=1, ge=1, le=16)
    """Flow runs the Prefect worker runs at once."""
    deployments: list[str] = Field(default_factory=list)
    """prefect.yaml files registered at start (default: deploy/prefect.yaml and deploy/prefect/*.yaml of the source tree)."""
    ready_timeout: float = Field(default=120.0, gt=0)
    """Seconds each service may take to become ready."""

    def stack_root(self, home: str) -> Path:
        return Path(self.root).expanduser() if self.root else Path(home).expanduser() / "stack"
