"""Fixed paths shared by the stack, the container health probe and the deployment specs."""

from __future__ import annotations

import os
from pathlib import Path

#: Health path of the API (services/api).
API_HEALTH = "/health"



def source_root() -> Path:
    """The source tree holding deploy/: ``$FUXIOPS_SOURCE_ROOT``, the checkout of an editable install, or the
    working directory (``/app`` in the images)."""
    env = os.environ.get("FUXIOPS_SOURCE_ROOT")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "deploy").is_dir():
        return checkout
    return Path.cwd()


def deployment_files(configured: list[str] | None = None) -> list[Path]:
    """Prefect deployment specs to register: configured ones, else deploy/prefect.yaml + deploy/prefect/*.yaml."""
    if configured:
        files = [Path(p) for p in configured]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            from fuxiops.errors import ConfigError

            raise ConfigError(f"setting FUXIOPS_STACK_DEPLOYMENTS: no such file(s): {', '.join(missing)}")
        return files
    deploy = source_root() / "deploy"
    files = [deploy / "prefect.yaml", *sorted((deploy / "prefect").glob("*.yaml"))]
    return [f for f in files if f.exists()]
