"""The forecasters' page (``/``) and the small catalog it reads."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from fuxiops.services.api.deps import ReadKey, RunsDep
from fuxiops.services.api.routes._common import open_run
from fuxiops.services.api.schemas.common import ERRORS
from fuxiops.services.api.variables import family

router = APIRouter(tags=["page"])


@functools.lru_cache(maxsize=1)
def _html() -> str:
    # page.html sits in the package folder itself so that the "*.html" package-data rule ships it.
    return resources.files("fuxiops.services.api").joinpath("page.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index() -> HTMLResponse:
    """Map viewer with variable / level / lead-time selectors; a click on the map draws a meteogram."""
    return HTMLResponse(_html())


@router.get("/page/catalog.json", dependencies=[ReadKey], responses=ERRORS,
            summary="Variables grouped by family, lead times and provenance of a run (for the page)")
async def page_catalog(runs: RunsDep,
                       run: Annotated[str | None, Query(pattern=r"^(latest|\d{10})$")] = None) -> dict[str, Any]:
    r = await open_run(runs, run)
    families: dict[str, list[dict[str, str]]] = {}
    for var in r.variables.values():
        label = f"{var.level} hPa" if var.level is not None else (var.stem or "surface")
        families.setdefault(family(var) if var.level is not None else
                            var.name.removesuffix(f"_{var.stem}") if var.stem else var.name, []).append(
            {"name": var.name, "level": label})
    for items in families.values():
        items.sort(key=lambda x: (not x["level"].endswith("m") and x["level"] != "surface",
                                  -int(x["level"].split()[0]) if x["level"].endswith("hPa") else 0))
    return {"run": r.info.run_id, "cycle_time": r.info.cycle_time_iso, "model": r.model, "status": r.info.status,
            "flagged": r.info.flagged,
            "steps": r.step_hours, "valid_times": r.valid_iso, "families": families}
