"""OGC API - EDR: landing page, conformance, collections, instances (= runs) and the four data queries."""

from __future__ import annotations

from typing import Annotated, Any, Callable

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fuxiops.services.api import edr
from fuxiops.services.api.deps import ReadKey, RunsDep, SettingsDep
from fuxiops.services.api.errors import ApiError, bad_parameter
from fuxiops.services.api.geometry import parse_wkt
from fuxiops.services.api.routes._common import open_run
from fuxiops.services.api.schemas.common import ERRORS
from fuxiops.services.api.schemas.edr import Collection, Collections, Conformance, EdrQuery, Instances, LandingPage
from fuxiops.services.api.store.runs import OpenRun

router = APIRouter(prefix="/edr", tags=["edr"], dependencies=[ReadKey])

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-common-2/1.0/conf/collections",
    "http://www.opengis.net/spec/ogcapi-edr-1/1.1/conf/core",
    "http://www.opengis.net/spec/ogcapi-edr-1/1.1/conf/collections",
    "http://www.opengis.net/spec/ogcapi-edr-1/1.1/conf/json",
    "http://www.opengis.net/spec/ogcapi-edr-1/1.1/conf/covjson",
    "http://www.opengis.net/spec/ogcapi-edr-1/1.1/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-edr-1/1.1/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-edr-1/1.1/conf/queries",
]
CID = Annotated[str, Path(description="single-level or pressure-level")]
RUN = Annotated[str, Path(description="Run id YYYYMMDDHH (or 'latest')", pattern=r"^(latest|\d{10})$")]
_JSON = orjson.OPT_SERIALIZE_NUMPY


def edr_query(coords: Annotated[str | None, Query(description="WKT geometry (lon lat, CRS84)")] = None,
              bbox: Annotated[str | None, Query(description="cube: minx,miny,maxx,maxy")] = None,
              z: Annotated[str | None, Query(description="Level(s) in hPa: 850 | 500,850 | 300/900")] = None,
              datetime: Annotated[str | None, Query(description="Instant | a,b | a/b | ../b | a/..")] = None,
              parameter_name: Annotated[str | None, Query(alias="parameter-name",
                                                          description="Comma list of parameters")] = None,
              crs: Annotated[str | None, Query(description="CRS84 only")] = None,
              f: Annotated[str, Query(description="CoverageJSON (default) or GeoJSON")] = "CoverageJSON",
              within: Annotated[float | None, Query(description="radius: distance")] = None,
              within_units: Annotated[str | None, Query(alias="within-units",
                                                        description="radius: km, m, mi, nm")] = None) -> EdrQuery:
    fmt = {"coveragejson": "CoverageJSON", "covjson": "CoverageJSON", "json": "CoverageJSON",
           "geojson": "GeoJSON"}.get(f.lower())
    if fmt is None:
        raise bad_parameter("f", f"unknown output format {f!r}", edr.OUTPUT_FORMATS)
    if crs not in (None, "", "CRS84", "OGC:CRS84", edr.CRS84, "EPSG:4326"):
        raise bad_parameter("crs", f"unsupported CRS {crs!r}", ["CRS84"])
    return EdrQuery(coords=coords, bbox=bbox, z=z, datetime=datetime, parameter_name=parameter_name, crs=crs,
                    f=fmt, within=within, within_units=within_units)  # type: ignore[arg-type]


EdrParams = Annotated[EdrQuery, Depends(edr_query)]


def _base(request: Request) -> str:
    return str(request.base_url)


def _json(body: Any, media: str = "application/json") -> Response:
    return Response(orjson.dumps(body, option=_JSON), media_type=media)


def _run_query(kind: str, run: OpenRun, cid: str, q: EdrQuery, limit: int) -> Response:
    sel = edr.select(run, cid, q.parameter_name, q.z, q.datetime)
    if kind == "position":
        g = parse_wkt(q.coords or "", ("POINT", "MULTIPOINT"))
        lon, lat, values = edr.read_points(run, sel, g.points[:, 0], g.points[:, 1], limit)
        if q.f == "GeoJSON":
            series = [{k: v[n] for k, v in values.items()} for n in range(lon.size)]
            return _json(edr.geojson_points(run, sel, lon, lat, series), "application/geo+json")
        return _json(edr.coverage_points(run, sel, lon, lat, values), "application/prs.coverage+json")
    parameter = "bbox" if kind == "cube" else "coords"
    if kind == "cube" and q.coords and not q.bbox:
        raise bad_parameter("bbox", "cube queries take bbox=minx,miny,maxx,maxy (not coords)")
    area = edr.area_for(run, kind, q.coords, q.bbox, q.within, q.within_units)
    values = edr.read_area(run, sel, area, limit, parameter)
    if q.f == "GeoJSON":
        iy, ix = np.nonzero(area.mask)
        series = [{k: v[:, a, b] for k, v in values.items()} for a, b in zip(iy, ix)]
        return _json(edr.geojson_points(run, sel, area.x[ix], area.y[iy], series), "application/geo+json")
    return _json(edr.coverage_grid(run, sel, area, values), "application/prs.coverage+json")


@router.get("", response_model=LandingPage, response_model_exclude_none=True, summary="EDR landing page")
def landing(request: Request) -> LandingPage:
    b = _base(request)
    return LandingPage(title="fuxiops OGC API - EDR",
                       description="Forecast fields of the latest and past runs: position, area, cube and radius "
                                   "queries in CoverageJSON or GeoJSON.",
                       links=[{"href": f"{b}edr", "rel": "self", "type": "application/json"},
                              {"href": f"{b}openapi.json", "rel": "service-desc",
                               "type": "application/vnd.oai.openapi+json;version=3.0"},
                              {"href": f"{b}edr/conformance", "rel": "conformance", "type": "application/json"},
                              {"href": f"{b}edr/collections", "rel": "data", "type": "application/json"}])


@router.get("/conformance", response_model=Conformance, summary="Conformance classes")
def conformance() -> Conformance:
    return Conformance(conformsTo=CONFORMANCE)


@router.get("/collections", response_model=Collections, responses=ERRORS, summary="Collections (latest run)")
async def collections(request: Request, runs: RunsDep) -> Collections:
    run = await open_run(runs, None)
    b = _base(request)
    return Collections(links=[{"href": f"{b}edr/collections", "rel": "self", "type": "application/json"}],
                       collections=[Collection(**edr.collection_json(run, c, b)) for c in edr.COLLECTIONS])


@router.get("/collections/{collection_id}", response_model=Collection, responses=ERRORS,
            summary="A collection: parameters, extents (spatial, temporal, vertical), queries")
async def collection(collection_id: CID, request: Request, runs: RunsDep) -> Collection:
    edr.check_collection(collection_id)
    run = await open_run(runs, None)
    return Collection(**edr.collection_json(run, collection_id, _base(request)))


@router.get("/collections/{collection_id}/instances", response_model=Instances, responses=ERRORS,
            summary="Instances of a collection: one per servable run")
async def instances(collection_id: CID, request: Request, runs: RunsDep) -> Instances:
    edr.check_collection(collection_id)
    b = _base(request)
    out = []
    for info in runs.catalog.runs():
        if not info.servable:
            continue
        try:
            run = await open_run(runs, info.run_id)
        except ApiError:
            continue  # an unreadable run is reported on its own endpoints, not here
        out.append(Collection(**edr.collection_json(run, collection_id, b, instance=True)))
    return Instances(links=[{"href": f"{b}edr/collections/{collection_id}/instances", "rel": "self",
                             "type": "application/json"}], instances=out)


@router.get("/collections/{collection_id}/instances/{run_id}", response_model=Collection, responses=ERRORS,
            summary="One instance (run) of a collection")
async def instance(collection_id: CID, run_id: RUN, request: Request, runs: RunsDep) -> Collection:
    edr.check_collection(collection_id)
    run = await open_run(runs, run_id)
    return Collection(**edr.collection_json(run, collection_id, _base(request), instance=True))


def _make(kind: str, with_instance: bool) -> Callable[..., Any]:
    doc = {"position": "Time series at the nearest grid cell of POINT/MULTIPOINT `coords`.",
           "area": "Grid cells inside the POLYGON `coords` (others null).",
           "cube": "Grid cells inside `bbox`, optionally at levels `z`.",
           "radius": "Grid cells within `within` `within-units` of the POINT `coords`."}[kind]

    async def handle(collection_id: str, run_id: str, runs: Any, settings: Any, q: EdrQuery) -> Response:
        edr.check_collection(collection_id)
        run = await open_run(runs, run_id, with_index=True)
        return await run_in_threadpool(_run_query, kind, run, collection_id, q, settings.service.max_values)

    if with_instance:
        async def with_run(collection_id: CID, run_id: RUN, runs: RunsDep, settings: SettingsDep,
                           q: EdrParams) -> Response:
            return await handle(collection_id, run_id, runs, settings, q)
        with_run.__doc__ = doc
        return with_run

    async def latest(collection_id: CID, runs: RunsDep, settings: SettingsDep, q: EdrParams) -> Response:
        return await handle(collection_id, "latest", runs, settings, q)
    latest.__doc__ = doc
    return latest


_COVJSON = {200: {"content": {"application/prs.coverage+json": {}, "application/geo+json": {}},
                  "description": "CoverageJSON (default) or GeoJSON"}, **ERRORS}
for _kind in edr.QUERIES:
    router.add_api_route(f"/collections/{{collection_id}}/{_kind}", _make(_kind, False), methods=["GET"],
                         response_class=Response, responses=_COVJSON, summary=f"{_kind.title()} query (latest run)",
                         name=f"edr_{_kind}")
    router.add_api_route(f"/collections/{{collection_id}}/instances/{{run_id}}/{_kind}", _make(_kind, True),
                         methods=["GET"], response_class=Response, responses=_COVJSON,
                         summary=f"{_kind.title()} query on one run", name=f"edr_instance_{_kind}")
