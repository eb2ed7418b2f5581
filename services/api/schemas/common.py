"""Schemas shared by several resources."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    """Every error: Open-Meteo's ``error``/``reason`` plus the offending parameter and allowed values."""

    error: bool = True
    status: int
    reason: str
    parameter: str | None = None
    allowed: list[Any] | None = None


class RunRef(BaseModel):
    """Which run produced the values (provenance of every response)."""

    id: str = Field(description="Run id YYYYMMDDHH (the cycle time).")
    cycle_time: str = Field(description="Reference time, ISO 8601 UTC.")
    model: str = Field(description="Model / checkpoint that produced the forecast.")
    status: str = Field(description="Manifest status, e.g. published / complete, or degraded / cold_start (served, flagged).")


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Bad parameter (the body names it and the allowed values)"},
    404: {"model": ErrorResponse, "description": "Unknown run or resource"},
    409: {"model": ErrorResponse, "description": "The run's status is a failure: it is not served"},
    422: {"model": ErrorResponse, "description": "Malformed parameter"},
    429: {"model": ErrorResponse, "description": "Rate limit exceeded"},
}
