"""The FastAPI application: routers, middleware, error handlers, and the resources opened in the lifespan."""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from fuxiops import __version__
from fuxiops.logs import get_logger
from fuxiops.services.api import coastlines
from fuxiops.services.api.cycles import CycleTrigger, default_trigger
from fuxiops.services.api.errors import install_handlers
from fuxiops.services.api.routes import admin, edr, forecast, health, maps, page, runs
from fuxiops.services.api.security import TokenBucketLimiter
from fuxiops.services.api.settings import Settings, load_settings
from fuxiops.services.api.store.catalog import RunCatalog
from fuxiops.services.api.store.runs import RunRepository
from fuxiops.services.api.telemetry import GuardMiddleware, Metrics

log = get_logger("fuxiops.services.api")

DESCRIPTION = """\
Forecasts of the fuxiops AI weather service: Open-Meteo-compatible point forecasts (`/v1/forecast`),
OGC API - EDR queries (`/edr`), published runs and product downloads (`/runs`), maps and meteograms, and a
page for forecasters (`/`). Every answer names the run (cycle time, model, status) that produced it.
Values are the model's 6-hourly steps; nothing is interpolated in time.
"""


def _prebuild(repo: RunRepository, metrics: Metrics) -> None:
    """Open the newest run and its point index, and load the coastlines, so that the first user does not wait."""
    try:
        removed = repo.prune_cache()
        if removed:
            log.info("removed %d stale point index(es)", removed)
    except OSError as e:
        log.warning("could not prune the point-index cache: %s", e)
    try:
        if repo.catalog.latest() is not None:
            run = repo.open(None)
            run.index()
            metrics.index_builds.inc()
    except Exception as e:  # a damaged run must not stop the service; requests report it
        log.warning("could not prepare the latest run: %s", e)
    try:
        coastlines.segments()
    except Exception as e:  # maps will retry and report
        log.warning("could not load coastlines: %s", e)


def create_app(settings: Settings | None = None, trigger: CycleTrigger | None = None) -> FastAPI:
    """Build the application; ``settings`` default to the deployment configuration and the environment."""
    settings = settings or load_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        catalog = RunCatalog(settings.products, recheck_seconds=settings.service.catalog_recheck_seconds)
        repo = RunRepository(catalog, settings.cache_dir, max_open=settings.service.max_open_runs,
                             channel_cache_size=settings.service.channel_cache_size)
        app.state.settings = settings
        app.state.runs = repo
        app.state.metrics = metrics
        app.state.trigger = trigger or default_trigger(log_dir=settings.cache_dir.parent / "cycles")
        app.state.maps = maps.MapCache(settings.service.map_cache_size)
        catalog.refresh(force=True)
        metrics.runs_available.set(len(catalog.runs()))
        log.info("serving %d run(s) from %s", len(catalog.runs()), settings.products)
        worker = None
        if settings.service.prebuild_latest:
            worker = threading.Thread(target=_prebuild, args=(repo, metrics), name="prebuild", daemon=True)
            worker.start()
        yield
        if worker is not None:
            worker.join(timeout=0.1)

    app = FastAPI(title="fuxiops forecast API", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url="/docs", redoc_url="/redoc", openapi_url="/openapi.json")
    install_handlers(app)
    api = settings.config.api
    if api.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(api.cors_origins), allow_methods=["GET", "HEAD"],
                           allow_headers=["X-API-Key", "Range", "If-None-Match"],
                           expose_headers=["ETag", "Content-Range", "Accept-Ranges"])
    app.add_middleware(GuardMiddleware, metrics=metrics, limiter=TokenBucketLimiter(api.rate_limit_per_minute),
                       trust_forwarded_for=settings.service.trust_forwarded_for,
                       key_digests=tuple(api.read_key_sha256) + tuple(api.admin_key_sha256))
    for module in (forecast, edr, runs, maps, page, health, admin):
        app.include_router(module.router)
    return app
