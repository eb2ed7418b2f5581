"""Prefect deployments of the cycle: the 6-hourly schedule shifted by the data cutoff, backfill, cold start.

``fuxiops cycle serve`` serves them from one process (``prefect.serve``); the
same deployments are declared for workers in ``deploy/prefect.yaml``. The API
triggers ``cycle/fuxiops-cycle`` by name.
"""

from __future__ import annotations

from typing import Any

from fuxiops.config import FuxiopsConfig
from fuxiops.errors import ConfigError

CYCLE_DEPLOYMENT = "fuxiops-cycle"
BACKFILL_DEPLOYMENT = "fuxiops-backfill"
COLD_START_DEPLOYMENT = "fuxiops-cold-start"


def cycle_cron(cron: str, cutoff_minutes: int) -> str:
    """The cron of the cycle deployment: ``cron`` (cycle times) shifted later by the data cutoff.

    ``0 */6 * * *`` with a 150-minute cutoff fires at 02:30, 08:30, 14:30 and
    20:30 UTC, each run taking the cycle whose cutoff has just passed. Crons
    whose hour field is not ``*``, ``*/N`` or a list of hours are returned as
    given: the flow still picks the newest cycle whose cutoff has passed.
    """
    fields = cron.split()
    if len(fields) != 5:
        raise ConfigError(f"cron must have 5 fields, got {cron!r}")
    minute, hour, rest = fields[0], fields[1], fields[2:]
    if cutoff_minutes == 0 or not minute.isdigit():
        return cron
    total = int(minute) + cutoff_minutes
    new_min, shift = total % 60, total // 60
    if hour == "*":
        new_hour = "*"
    elif hour.startswith("*/") and hour[2:].isdigit():
        every = int(hour[2:])
        new_hour = f"{shift % every}-23/{every}" if shift % every else hour
    elif all(h.isdigit() for h in hour.split(",")):
        new_hour = ",".join(str(h) for h in sorted((int(h) + shift) % 24 for h in hour.split(",")))
    else:
        return cron
    return " ".join([str(new_min), new_hour, *rest])


def build_deployments(cfg: FuxiopsConfig, config_path: str | None = None) -> list[Any]:
    """Runner deployments of the three flows (``cycle`` on the shifted schedule, one at a time)."""
    from fuxiops.pipeline.cycle.flows import backfill, cold_start, cycle

    params = {"config_path": config_path} if config_path else {}
    cron = cycle_cron(cfg.schedule.cron, cfg.schedule.cutoff_minutes)
    return [
        cycle.to_deployment(name=CYCLE_DEPLOYMENT, cron=cron, parameters=params, concurrency_limit=1,
                            tags=["fuxiops", "cycle"],
                            description=f"6-hourly cycle (cycle times {cfg.schedule.cron}, data cutoff "
                                        f"{cfg.schedule.cutoff_minutes} min: runs at {cron} UTC)"),
        backfill.to_deployment(name=BACKFILL_DEPLOYMENT, parameters=params, concurrency_limit=1,
                               tags=["fuxiops", "backfill"]),
        cold_start.to_deployment(name=COLD_START_DEPLOYMENT, parameters=params, concurrency_limit=1,
                                 tags=["fuxiops", "cold-start"]),
    ]


def serve_deployments(cfg: FuxiopsConfig, config_path: str | None = None) -> None:
    """Serve the deployments until interrupted (needs a Prefect server: PREFECT_API_URL)."""
    from prefect import serve

    serve(*build_deployments(cfg, config_path))
