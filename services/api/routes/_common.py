"""Helpers shared by routers: run provenance, coordinate lists, opening runs off the event loop."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool

from fuxiops.services.api.errors import bad_parameter
from fuxiops.services.api.store.runs import OpenRun, RunRepository


def run_ref(run: OpenRun) -> dict[str, Any]:
    return {"id": run.info.run_id, "cycle_time": run.info.cycle_time_iso, "model": run.model,
            "status": run.info.status}


async def open_run(repo: RunRepository, run_id: str | None, with_index: bool = False) -> OpenRun:
    """The run, opened in a worker thread the first time (opening and index builds block)."""
    run = repo.cached(run_id)
    if run is None:
        run = await run_in_threadpool(repo.open, run_id)
    if with_index and not run.index_ready:
        await run_in_threadpool(run.index)
    return run


def parse_floats(text: str, parameter: str, lo: float, hi: float) -> np.ndarray:
    """A comma list of numbers within [lo, hi]; errors name the parameter and the range."""
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            x = float(part)
        except ValueError:
            raise bad_parameter(parameter, f"{part!r} is not a number; expected a comma list of numbers in "
                                           f"[{lo:g}, {hi:g}]") from None
        if not math.isfinite(x) or x < lo or x > hi:
            raise bad_parameter(parameter, f"{part} is out of range; allowed: {lo:g} to {hi:g}")
        out.append(x)
    return np.array(out, dtype=np.float64)


def parse_coordinates(latitude: str, longitude: str, max_locations: int) -> tuple[np.ndarray, np.ndarray]:
    lat = parse_floats(latitude, "latitude", -90.0, 90.0)
    lon = parse_floats(longitude, "longitude", -180.0, 360.0)
    if lat.size != lon.size:
        raise bad_parameter("longitude", f"{lon.size} longitude(s) for {lat.size} latitude(s); give one each")
    if lat.size > max_locations:
        raise bad_parameter("latitude", f"{lat.size} locations requested; at most {max_locations} per request")
    return lat, lon


def split_list(values: list[str] | None) -> list[str]:
    """``a,b`` and repeated parameters alike, blanks dropped, order kept, duplicates removed."""
    out: list[str] = []
    for v in values or []:
        for part in v.split(","):
            p = part.strip()
            if p and p not in out:
                out.append(p)
    return out
