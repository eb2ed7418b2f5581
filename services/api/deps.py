"""FastAPI dependencies: the resources opened in the lifespan, and the API-key checks.

All are ``async def``: FastAPI would run plain functions in its thread pool, which costs more than
the work they do on the point-query hot path.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request

from fuxiops.services.api.cycles import CycleTrigger
from fuxiops.services.api.errors import ApiError
from fuxiops.services.api.security import key_matches
from fuxiops.services.api.settings import Settings
from fuxiops.services.api.store.runs import RunRepository
from fuxiops.services.api.telemetry import Metrics


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_repository(request: Request) -> RunRepository:
    return request.app.state.runs  # type: ignore[no-any-return]


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics  # type: ignore[no-any-return]


async def get_trigger(request: Request) -> CycleTrigger:
    return request.app.state.trigger  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]
RunsDep = Annotated[RunRepository, Depends(get_repository)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
TriggerDep = Annotated[CycleTrigger, Depends(get_trigger)]

_KEY_HELP = "API key (only needed where the deployment configures read keys)."


def check_read_key(settings: Settings, key: str | None) -> None:
    """Reads are open unless ``api.read_key_sha256`` lists digests; admin keys also read."""
    digests = settings.config.api.read_key_sha256
    if not digests:
        return
    if not key_matches(key, list(digests) + list(settings.config.api.admin_key_sha256)):
        raise ApiError(401 if not key else 403, "a valid API key is required (header X-API-Key)",
                       parameter="X-API-Key", headers={"WWW-Authenticate": "ApiKey"})


async def require_read_key(settings: SettingsDep,
                           x_api_key: Annotated[str | None, Header(description=_KEY_HELP)] = None,
                           apikey: Annotated[str | None, Query(description=_KEY_HELP, include_in_schema=False)] = None,
                           ) -> None:
    check_read_key(settings, x_api_key or apikey)


async def require_admin_key(settings: SettingsDep,
                      x_api_key: Annotated[str | None, Header(description="Admin API key.")] = None) -> None:
    """Admin actions need a key whose SHA-256 is in ``api.admin_key_sha256``."""
    digests = settings.config.api.admin_key_sha256
    if not digests:
        raise ApiError(403, "admin actions are disabled: no admin key is configured (api.admin_key_sha256)")
    if not x_api_key:
        raise ApiError(401, "an admin API key is required (header X-API-Key)", parameter="X-API-Key",
                       headers={"WWW-Authenticate": "ApiKey"})
    if not key_matches(x_api_key, digests):
        raise ApiError(403, "the API key is not an admin key", parameter="X-API-Key")


ReadKey = Depends(require_read_key)
AdminKey = Depends(require_admin_key)
