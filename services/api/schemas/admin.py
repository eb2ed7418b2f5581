"""/admin: cycle triggers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class CycleRequest(BaseModel):
    """Which cycle to run."""

    model_config = ConfigDict(extra="forbid")

    time: datetime = Field(description="Cycle time, ISO 8601 UTC on a cycle boundary, e.g. 2023-01-01T06:00:00Z.")


class CycleTriggered(BaseModel):
    backend: str = Field(description="prefect (flow run created) or subprocess (process started).")
    id: str = Field(description="Prefect flow-run id or process id.")
    cycle_time: str
    run_id: str
    detail: dict[str, str]
