"""GET /v1/forecast: Open-Meteo-compatible point forecasts from the point index.

The hot path avoids xarray and pydantic response validation: nearest grid
cells are computed arithmetically, one mmap read gives all channels x steps,
units are converted with numpy, and orjson writes the float32 arrays. The
query is validated by the ``ForecastQuery`` model directly (pydantic-core),
not by FastAPI's per-parameter dependency machinery, which cost about half of
the request's CPU time; the OpenAPI parameters are generated from that model.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from fuxiops.services.api.deps import check_read_key
from fuxiops.services.api.errors import bad_parameter
from fuxiops.services.api.routes._common import open_run, parse_coordinates, parse_floats, run_ref, split_list
from fuxiops.services.api.schemas.common import ERRORS
from fuxiops.services.api.schemas.forecast import ForecastQuery, ForecastResponse
from fuxiops.services.api.store.runs import OpenRun
from fuxiops.services.api.timeutil import auto_zone, local_times, zone
from fuxiops.services.api.variables import ApiVariable, Plan, Units

router = APIRouter(prefix="/v1", tags=["forecast"])


def _openapi_parameters() -> list[dict[str, Any]]:
    """OpenAPI query parameters from the request model (the endpoint reads the query string itself)."""
    schema = ForecastQuery.model_json_schema()
    required = set(schema.get("required", []))
    out: list[dict[str, Any]] = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        desc = prop.pop("description", None)
        prop.pop("title", None)
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if desc:
            param["description"] = desc
        if name == "hourly":
            param["schema"] = {"type": "array", "items": {"type": "string"}}
            param["style"], param["explode"] = "form", True
        out.append(param)
    out.append({"name": "X-API-Key", "in": "header", "required": False, "schema": {"type": "string"},
                "description": "API key (only needed where the deployment configures read keys)."})
    return out


def _query(request: Request) -> ForecastQuery:
    qp = request.query_params
    raw: dict[str, Any] = dict(qp)
    if "hourly" in raw:
        raw["hourly"] = qp.getlist("hourly")
    try:
        return ForecastQuery.model_validate(raw)
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": ("query", *err["loc"])} for err in e.errors()]) from None

_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY


def _time_axis(run: OpenRun, tz_name: str, forecast_days: int, timeformat: str) -> tuple[list[Any], int, str, int]:
    """(times, utc offset, abbreviation, number of steps), cached per run."""
    key = ("times", tz_name, forecast_days, timeformat)
    hit = run.cache.get(key)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    tz = zone(tz_name)
    epoch = run.valid_epoch
    first_local = datetime.fromtimestamp(int(epoch[0]), tz)
    midnight = first_local.replace(hour=0, minute=0, second=0, microsecond=0)
    end = (midnight + timedelta(days=forecast_days)).astimezone(dt_timezone.utc).timestamp()
    n = int(np.searchsorted(epoch, end, side="left"))
    iso, offset, abbr = local_times(epoch[:n], tz)
    times: list[Any] = iso if timeformat == "iso8601" else [int(e) for e in epoch[:n]]
    out = (times, offset, abbr, n)
    if len(run.cache) < 4096:
        run.cache[key] = out
    return out


def _plan(run: OpenRun, names: list[str], units: Units) -> tuple[Plan, dict[str, str]]:
    """The conversion plan and the units of the requested variables (cached per run)."""
    key = ("plan", tuple(names), units)
    hit = run.cache.get(key)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    variables: list[ApiVariable] = []
    for n in names:
        var = run.variables.get(n)
        if var is None:
            raise bad_parameter("hourly", f"unknown variable {n!r} for run {run.info.run_id}", list(run.variables))
        variables.append(var)
    out = (Plan(variables, run.channel_index, units), {v.name: v.units(units) for v in variables})
    if len(run.cache) < 4096:
        run.cache[key] = out
    return out


@router.get("/forecast", response_model=ForecastResponse | list[ForecastResponse], responses=ERRORS,
            summary="Point forecast (Open-Meteo compatible)", openapi_extra={"parameters": _openapi_parameters()})
async def forecast(request: Request) -> Response:
    """Forecast time series at one or more points, at the model's 6-hourly steps (nothing interpolated).

    The nearest grid point is used; ``latitude``/``longitude`` in the answer are that point's.
    ``run`` in the answer names the run, model and status that produced the values.
    """
    t0 = time.perf_counter()
    settings = request.app.state.settings
    runs = request.app.state.runs
    check_read_key(settings, request.headers.get("x-api-key") or request.query_params.get("apikey"))
    q = _query(request)
    if q.daily:
        raise bad_parameter("daily", "daily aggregates are not offered; request 'hourly' (6-hourly values)")
    if q.current:
        raise bad_parameter("current", "current conditions are not offered; request 'hourly'")
    lat, lon = parse_coordinates(q.latitude, q.longitude, settings.service.max_locations)
    elevation = None
    if q.elevation is not None:
        elevation = parse_floats(q.elevation, "elevation", -1000.0, 9000.0)
        if elevation.size not in (1, lat.size):
            raise bad_parameter("elevation", f"{elevation.size} elevation(s) for {lat.size} location(s)")
    if q.timezone != "auto":
        zone(q.timezone)  # validate before any I/O
    run = await open_run(runs, q.run, with_index=True)
    units = Units(q.temperature_unit, q.wind_speed_unit, q.precipitation_unit)
    plan, var_units = _plan(run, split_list(q.hourly), units)
    i, j = run.nearest(lat, lon)
    values = run.index().points(i, j) if plan.n else None
    grid_lat = run.lat[i]
    grid_lon = run.grid_lon(j)
    ref = run_ref(run)
    hourly_units = {"time": q.timeformat, **var_units}
    results = []
    for k in range(lat.size):
        tz_name = auto_zone(float(lat[k]), float(lon[k])) if q.timezone == "auto" else q.timezone
        if tz_name.lower() in ("utc", "gmt"):
            tz_name = "GMT"
        times, offset, abbr, n = _time_axis(run, tz_name, q.forecast_days, q.timeformat)
        item: dict[str, Any] = {
            "latitude": float(grid_lat[k]), "longitude": float(grid_lon[k]),
            "generationtime_ms": 0.0, "utc_offset_seconds": offset, "timezone": tz_name,
            "timezone_abbreviation": abbr,
            "elevation": float(elevation[min(k, elevation.size - 1)]) if elevation is not None else None,
        }
        if plan.n:
            assert values is not None
            table = np.round(plan.apply(values[k][:, :n]), 2)  # (V, n), rows are contiguous
            hourly: dict[str, Any] = {"time": times}
            for r, name in enumerate(plan.names):
                hourly[name] = table[r]
            item["hourly_units"] = hourly_units
            item["hourly"] = hourly
        item["run"] = ref
        results.append(item)
    ms = (time.perf_counter() - t0) * 1000.0
    for item in results:
        item["generationtime_ms"] = round(ms, 3)
    body = orjson.dumps(results[0] if len(results) == 1 else results, option=_JSON_OPTS)
    return Response(body, media_type="application/json")
