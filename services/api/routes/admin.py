"""/admin: operator actions behind the admin API key."""

from __future__ import annotations

from datetime import timezone

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from fuxiops.logs import get_logger
from fuxiops.services.api.deps import AdminKey, MetricsDep, SettingsDep, TriggerDep
from fuxiops.services.api.errors import ApiError, bad_parameter
from fuxiops.services.api.schemas.admin import CycleRequest, CycleTriggered
from fuxiops.services.api.schemas.common import ERRORS

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminKey])
log = get_logger("fuxiops.services.admin")


@router.post("/cycles", status_code=202, response_model=CycleTriggered, responses=ERRORS,
             summary="Trigger a forecast cycle (admin)")
async def trigger_cycle(body: CycleRequest, settings: SettingsDep, trigger: TriggerDep,
                        metrics: MetricsDep) -> CycleTriggered:
    """Starts the cycle for ``time`` through Prefect (``PREFECT_API_URL`` set) or as a ``fuxiops cycle run``
    process, and returns at once (202)."""
    t = body.time
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc).replace(tzinfo=None)
    step = settings.config.schedule.step_hours
    if t.minute or t.second or t.microsecond or t.hour % step:
        allowed = [f"{h:02d}:00Z" for h in range(0, 24, step)]
        raise bad_parameter("time", f"{t:%Y-%m-%dT%H:%M:%S}Z is not a cycle time (every {step} h)", allowed)
    try:
        result = await run_in_threadpool(trigger.trigger, t)
    except Exception as e:  # the backend is down or refused: say so, without internals
        log.error("cycle trigger via %s failed: %s", trigger.name, e)
        raise ApiError(503, f"could not start the cycle via {trigger.name}; see the service log") from None
    metrics.cycles_triggered.labels(result.backend).inc()
    log.info("cycle %s triggered via %s (%s)", t, result.backend, result.id)
    return CycleTriggered(backend=result.backend, id=result.id, cycle_time=f"{t:%Y-%m-%dT%H:%M:%S}Z",
                          run_id=f"{t:%Y%m%d%H}", detail=result.detail)
