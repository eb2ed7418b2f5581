"""/maps/{run}/{variable}/{step}.png and /meteogram.png: rendered images, cached in memory."""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fuxiops.services.api import coastlines
from fuxiops.services.api.deps import ReadKey, RunsDep, SettingsDep
from fuxiops.services.api.errors import bad_parameter
from fuxiops.services.api.plotting import MAP_LAYOUT, render_map, render_meteogram
from fuxiops.services.api.routes._common import open_run, parse_coordinates
from fuxiops.services.api.schemas.common import ERRORS
from fuxiops.services.api.store.runs import OpenRun
from fuxiops.services.api.variables import Units, WindSpeedUnit, TemperatureUnit

router = APIRouter(tags=["maps"], dependencies=[ReadKey])

PNG = {200: {"content": {"image/png": {}}, "description": "PNG image"}, **ERRORS}
#: Meteogram panels, in order, where the run has them.
METEOGRAM = ("temperature_2m", "wind_speed_10m", "pressure_msl", "precipitation", "temperature_850hPa")


class MapCache:
    """LRU of rendered PNGs keyed by run publication, variable, step and units."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        with self._lock:
            v = self._items.get(key)
            if v is not None:
                self._items.move_to_end(key)
            return v

    def put(self, key: tuple[Any, ...], value: bytes) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def _field(run: OpenRun, var_name: str, step_index: int, units: Units) -> np.ndarray:
    var = run.variables[var_name]
    fields = [run.store.read_field(run.store.channels[run.channel_index[c]], step_index) for c in var.channels]
    stacked = np.stack(fields, axis=-1)[..., None]  # (lat, lon, k, 1)
    return var.compute(stacked, {c: k for k, c in enumerate(var.channels)}, units)[..., 0]


def _png_response(png: bytes, run: OpenRun) -> Response:
    return Response(png, media_type="image/png",
                    headers={"Cache-Control": "public, max-age=600", "X-Fuxiops-Run": run.info.run_id,
                             "X-Fuxiops-Run-Status": run.info.status})


@router.get("/maps/layout", summary="Pixel layout of map images (to turn clicks into coordinates)")
def map_layout() -> dict[str, Any]:
    return dict(MAP_LAYOUT)


@router.get("/maps/{run}/{variable}/{step}.png", response_class=Response, responses=PNG,
            summary="Global map of a variable at a lead time")
async def map_png(request: Request, runs: RunsDep,
                  run: Annotated[str, Path(description="'latest' or a run id YYYYMMDDHH",
                                           pattern=r"^(latest|\d{10})$")],
                  variable: Annotated[str, Path(description="API variable name, e.g. temperature_2m")],
                  step: Annotated[int, Path(description="Lead time in hours, e.g. 24", ge=0, le=10000)],
                  temperature_unit: TemperatureUnit = "celsius",
                  wind_speed_unit: WindSpeedUnit = "kmh") -> Response:
    """PNG map with coastlines, colour bar with units, valid time, run and model."""
    r = await open_run(runs, run)
    if variable not in r.variables:
        raise bad_parameter("variable", f"unknown variable {variable!r}", list(r.variables))
    if step not in r.step_hours:
        raise bad_parameter("step", f"+{step} h is not a lead time of run {r.info.run_id}", r.step_hours)
    units = Units(temperature_unit, wind_speed_unit)
    cache: MapCache = request.app.state.maps
    key = ("map", r.info.fingerprint, variable, step, units)
    png = cache.get(key)
    if png is None:
        k = r.step_hours.index(step)
        var = r.variables[variable]

        def draw() -> bytes:
            field = _field(r, variable, k, units)
            valid = datetime.fromisoformat(str(r.valid_times[k]))
            return render_map(field, r.lat, r.lon, var, var.units(units), valid, r.info.run_id, step, r.model,
                              r.info.status if r.info.flagged else "", coastlines.segments())

        png = await run_in_threadpool(draw)
        cache.put(key, png)
    return _png_response(png, r)


@router.get("/meteogram.png", response_class=Response, responses=PNG, summary="Meteogram at a point")
async def meteogram(request: Request, runs: RunsDep, settings: SettingsDep,
                    latitude: Annotated[str, Query(description="Latitude, -90..90")],
                    longitude: Annotated[str, Query(description="Longitude, -180..360")],
                    run: Annotated[str | None, Query(pattern=r"^(latest|\d{10})$")] = None,
                    temperature_unit: TemperatureUnit = "celsius",
                    wind_speed_unit: WindSpeedUnit = "kmh") -> Response:
    """Time series of the main surface variables (2 m temperature, 10 m wind with direction arrows, MSL
    pressure, precipitation when present, 850 hPa temperature) at the nearest grid point."""
    lat, lon = parse_coordinates(latitude, longitude, 1)
    r = await open_run(runs, run, with_index=True)
    units = Units(temperature_unit, wind_speed_unit)
    i, j = r.nearest(lat, lon)
    values = r.index().point(int(i[0]), int(j[0]))
    names = [n for n in METEOGRAM if n in r.variables]
    if not names:
        raise bad_parameter("run", "this run has none of the meteogram variables", list(METEOGRAM))
    panels = [(n, r.variables[n].units(units), r.variables[n].compute(values, r.channel_index, units))
              for n in names]
    wdir = (r.variables["wind_direction_10m"].compute(values, r.channel_index, units)
            if "wind_direction_10m" in r.variables else None)
    png = await run_in_threadpool(render_meteogram, r.valid_times, panels, wdir, float(r.lat[i[0]]),
                                  float(r.grid_lon(j)[0]), r.info.run_id, r.model,
                                  r.info.status if r.info.flagged else "")
    return _png_response(png, r)
