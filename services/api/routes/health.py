"""/health and /metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from fuxiops import __version__
from fuxiops.services.api.deps import MetricsDep, RunsDep

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness and data freshness")
def health(runs: RunsDep, metrics: MetricsDep) -> dict[str, Any]:
    """``ok`` when a servable run exists, ``no-data`` otherwise (the process is alive either way)."""
    items = runs.catalog.runs()
    latest = runs.catalog.latest()
    metrics.runs_available.set(len(items))
    return {"status": "ok" if latest else "no-data", "version": __version__, "runs": len(items),
            "latest": latest.run_id if latest else None,
            "latest_status": latest.status if latest else None,
            "latest_cycle_time": latest.cycle_time_iso if latest else None}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def prometheus(metrics: MetricsDep) -> Response:
    body, ctype = metrics.exposition()
    return Response(body, media_type=ctype)
