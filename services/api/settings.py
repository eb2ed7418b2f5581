"""Service settings: the deployment configuration (``fuxiops.config``) plus the API's own knobs.

Both are pydantic-settings models: ``FUXIOPS_API__PORT=8080`` overrides the
deployment's ``api.port``; ``FUXIOPS_SERVICE_MAX_VALUES=1000000`` overrides a
service limit below.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from fuxiops.config import FuxiopsConfig, load_config


class ServiceSettings(BaseSettings):
    """Limits and caches of the REST service (not part of the deployment YAML)."""

    model_config = SettingsConfigDict(env_prefix="FUXIOPS_SERVICE_", extra="forbid", frozen=True)

    cache_dir: str | None = None
    """Where point indexes are kept (default: ``{home}/cache/api``)."""
    max_locations: int = Field(default=100, ge=1, le=10000)
    """Most coordinates in one /v1/forecast or MULTIPOINT request."""
    max_values: int = Field(default=2_000_000, ge=1000)
    """Most values (points x parameters x times x levels) in one EDR response."""
    max_open_runs: int = Field(default=4, ge=1, le=64)
    """Runs kept open (stores and point indexes) at once."""
    map_cache_size: int = Field(default=64, ge=0)
    """Rendered PNGs kept in memory."""
    channel_cache_size: int = Field(default=2, ge=0, le=64)
    """Decoded channels (all lead times) kept per open run for maps, when Zarr chunks hold every lead time
    (about 170 MB each at 0.25 degree and 41 steps; 2 covers a derived wind)."""
    prebuild_latest: bool = True
    """Build the newest run's point index in the background at startup."""
    catalog_recheck_seconds: float = Field(default=2.0, ge=0.0)
    """How often manifests are re-read even if the products folder did not change."""
    trust_forwarded_for: bool = False
    """Rate-limit by the first X-Forwarded-For address (only behind a trusted proxy)."""


@dataclass(frozen=True)
class Settings:
    """Everything the application reads at startup."""

    config: FuxiopsConfig
    service: ServiceSettings

    @property
    def products(self) -> Path:
        return Path(self.config.location("products"))

    @property
    def cache_dir(self) -> Path:
        if self.service.cache_dir:
            return Path(self.service.cache_dir).expanduser()
        return Path(self.config.home).expanduser() / "cache" / "api"


def load_settings(config_path: str | None = None) -> Settings:
    """Settings from a deployment YAML (or ``$FUXIOPS_CONFIG`` / defaults) and the environment."""
    return Settings(config=load_config(config_path), service=ServiceSettings())
