"""fuxiops.services.api: the FastAPI application (``create_app``; ``app_factory`` for uvicorn --factory)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI


def app_factory() -> "FastAPI":
    """The application from ``$FUXIOPS_CONFIG`` (or defaults) and the environment: what uvicorn workers run."""
    from fuxiops.logs import setup_logging
    from fuxiops.services.api.app import create_app

    setup_logging("INFO", "json")
    return create_app()


def create_app(*args: object, **kwargs: object) -> "FastAPI":
    from fuxiops.services.api.app import create_app as _create

    return _create(*args, **kwargs)  # type: ignore[arg-type]
