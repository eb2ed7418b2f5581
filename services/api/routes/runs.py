"""/runs: the published runs with status and provenance, their manifests and file downloads; run deletion."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fuxiops.services.api.deps import AdminKey, ReadKey, RunsDep
from fuxiops.services.api.downloads import file_response
from fuxiops.services.api.errors import ApiError
from fuxiops.services.api.schemas.common import ERRORS
from fuxiops.services.api.schemas.runs import FileInfo, RunDeleted, RunList, RunSummary
from fuxiops.services.api.store.catalog import RunInfo

router = APIRouter(prefix="/runs", tags=["runs"])

RunId = Annotated[str, Path(description="Run id YYYYMMDDHH, or 'latest'.", pattern=r"^(latest|\d{10})$")]


def summary(run: RunInfo, base: str) -> RunSummary:
    files = [FileInfo(name=f.name, format=f.format, size=f.size, sha256=f.sha256,
                      href=None if f.extra.get("kind") == "directory" else f"{base}runs/{run.run_id}/files/{f.name}")
             for f in run.files.values()]
    return RunSummary(id=run.run_id, cycle_time=run.cycle_time_iso, status=run.status, model=run.model,
                      servable=run.servable, files=files,
                      links={"self": f"{base}runs/{run.run_id}", "forecast": f"{base}v1/forecast?run={run.run_id}",
                             "edr": f"{base}edr/collections/single-level/instances/{run.run_id}"})


@router.get("", response_model=RunList, dependencies=[ReadKey], summary="Published runs, newest first")
def list_runs(request: Request, runs: RunsDep) -> RunList:
    base = str(request.base_url)
    items = runs.catalog.runs()
    latest = runs.catalog.latest()
    return RunList(latest=latest.run_id if latest else None, runs=[summary(r, base) for r in items])


@router.get("/{run_id}", responses=ERRORS, dependencies=[ReadKey], summary="A run's manifest")
def get_run(run_id: RunId, runs: RunsDep) -> dict[str, Any]:
    """The manifest as published (run id, cycle time, status, model provenance, files with sha256)."""
    return dict(runs.info(run_id, data=False).manifest)


@router.get("/{run_id}/files/{name}", dependencies=[ReadKey],
                  responses={**ERRORS, 206: {"description": "Partial content (Range)"},
                             304: {"description": "Not modified (If-None-Match)"},
                             416: {"description": "Range not satisfiable"}},
                  response_class=Response, summary="Download a product file (Range, ETag)")
def download(run_id: RunId, name: Annotated[str, Path(description="File name as listed in the manifest.")],
             request: Request, runs: RunsDep,
             range_: Annotated[str | None, Header(alias="Range")] = None,
             if_none_match: Annotated[str | None, Header()] = None,
             if_range: Annotated[str | None, Header()] = None) -> Response:
    """GRIB2 / NetCDF files of a run. ``ETag`` is the file's SHA-256; ``Range`` gives 206 (multipart for several
    ranges); ``If-None-Match`` gives 304."""
    return file_response(runs.info(run_id, data=False), name, request.method, range_, if_none_match, if_range)


# HEAD answers the same headers without a body (clients check size and ETag before downloading).
router.add_api_route("/{run_id}/files/{name}", download, methods=["HEAD"], dependencies=[ReadKey],
                     response_class=Response, include_in_schema=False)


@router.delete("/{run_id}", response_model=RunDeleted, dependencies=[AdminKey], responses=ERRORS,
               summary="Delete a run (admin)")
async def delete_run(run_id: Annotated[str, Path(pattern=r"^\d{10}$")], runs: RunsDep) -> RunDeleted:
    """Removes the run folder (renamed aside first, so readers never see half a run) and its caches."""
    if runs.catalog.get(run_id) is None:
        raise ApiError(404, f"run {run_id} not found", parameter="run_id")
    await run_in_threadpool(runs.catalog.delete, run_id)
    runs.forget(run_id)
    return RunDeleted(deleted=run_id)
