"""Offline experiments for the paper's claims: cycling on own backgrounds and forecasts from analyses.

These run the networks exactly as the operational cycle does (ingest -> QC ->
gridding with the checkpoint's fixed observation statistics -> analysis ->
6-hour forecast as the next background) but without products or catalog, so
that 120 cycles of an ablation can be scored against the world's truth.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import xarray as xr
from tqdm import tqdm

from fuxiops.config import FuxiopsConfig, load_config
from fuxiops.errors import DataError
from fuxiops.models.base import Assimilator, Forecaster
from fuxiops.models.training.prepare import cycle_files
from fuxiops.state import from_channels, to_channels

H6 = np.timedelta64(6, "h")


def obs_for_cycle(world: Path, kind: str, cycle: np.datetime64, dep: FuxiopsConfig,
                  stats: dict[str, dict[str, tuple[float, float]]] | None,
                  background: xr.Dataset | None = None,
                  reports: list[dict[str, Any]] | None = None) -> xr.Dataset | None:
    """Gridded observations of one cycle from the world's BUFR files (None when there are none).

    With ``reports`` a list, the cycle's QC summary (:func:`qc_summary`) is appended to it."""
    from fuxiops.pipeline.obs.gridding import grid_observations
    from fuxiops.pipeline.obs.ingest import ingest

    c = pd.Timestamp(cycle)
    files = cycle_files(world, kind, c)
    res = ingest(files, cycle_time=c.to_pydatetime(), config=dep, grid_output=False, mode="serial",
                 background=background) if files else None
    if reports is not None:
        reports.append(qc_summary(res.report if res else None, c))
    return grid_observations(res.table, cycle_time=c, config=dep, stats=stats) if res else None


def qc_summary(report: dict[str, Any] | None, cycle: pd.Timestamp) -> dict[str, Any]:
    """Rows, rows used and rows the background check rejected, per report type and in all."""
    by_type = {rt: {"rows": d["rows"], "used": d["used"], "background_rejected": d["by_reason"].get("BACKGROUND", 0)}
               for rt, d in ((report or {}).get("by_report_type") or {}).items()}
    total = {k: sum(d[k] for d in by_type.values()) for k in ("rows", "used", "background_rejected")}
    return {"cycle": cycle.strftime("%Y-%m-%dT%H"), **total, "by_type": by_type}


def load_obs_stats(world: Path) -> dict[str, dict[str, tuple[float, float]]] | None:
    p = world / "training" / "obs_normalisation.json"
    return json.loads(p.read_text()) if p.is_file() else None


def assimilator_obs_stats(assimilator: Assimilator, world: Path) -> dict[str, dict[str, tuple[float, float]]] | None:
    """The observation statistics ``assimilator`` was trained with (as the operational cycle uses them),
    else the world's own ``training/obs_normalisation.json``."""
    return (getattr(assimilator, "training", None) or {}).get("obs_normalisation") or load_obs_stats(world)


def offline_deployment(forecaster: Forecaster) -> FuxiopsConfig:
    """The deployment configuration (grid, variable set, QC) an offline cycle of ``forecaster`` runs with."""
    coords = forecaster.coords
    return load_config(None, grid=coords.grid.name, variables=_preset_of(coords.variables))


def cycle_offline(forecaster: Forecaster, assimilator: Assimilator, world: Path, start: str | np.datetime64,
                  n_cycles: int, obs_kind: str = "raw", progress: bool = True, background_check: bool = True,
                  qc_reports: list[dict[str, Any]] | None = None) -> Iterator[tuple[xr.Dataset, xr.Dataset]]:
    """Yield (background, analysis) per cycle, cycling on own 6-hour forecasts.

    Cold start: the first background is the world's NWP forecast valid at
    ``start`` (shortest lead available), as an operational centre would start
    from an external analysis; the forecaster's x_{t-6h} input is the previous
    analysis (the NWP state for the first cycle). Observations are normalised
    with the statistics the assimilator was trained with (as the operational
    cycle does; the world's own ``training/obs_normalisation.json`` if the
    checkpoint has none). ``background_check=False`` skips the |O-B| check
    (an experiment: the operational QC always runs it); ``qc_reports`` collects
    each cycle's :func:`qc_summary`.
    """
    from fuxiops.models.training.data import BackgroundPool, normalise_layout

    coords = forecaster.coords
    chans = coords.variables.state_channels
    grid = coords.grid
    dep = offline_deployment(forecaster)
    stats = assimilator_obs_stats(assimilator, world)
    pool = BackgroundPool(normalise_layout(xr.open_zarr(world / "nwp.zarr", consolidated=None, chunks=None)),
                          chans)
    t0 = np.datetime64(start, "ns")
    if pool.cold_start_lead(t0) is None or pool.cold_start_lead(t0 - H6) is None:
        raise DataError(f"no NWP forecast valid at {t0} and {t0 - H6} to cold-start the cycling from")
    bg = pool.cold_start(t0)
    prev = pool.cold_start(t0 - H6)
    for k in tqdm(range(n_cycles), desc=f"cycling ({obs_kind} obs)", disable=not progress):
        t = t0 + k * H6
        bg_ds = from_channels(bg, chans, grid).assign_coords(time=t)
        obs = obs_for_cycle(world, obs_kind, t, dep, stats, background=bg_ds if background_check else None,
                            reports=qc_reports)
        ana_ds = assimilator.analyse(bg_ds, obs, t)
        yield bg_ds, ana_ds
        ana = to_channels(ana_ds, chans)
        nxt = forecaster.step(np.stack([prev, ana]), t)[: len(chans)]
        prev, bg = ana, nxt


def _preset_of(variables: object) -> dict[str, str]:
    from fuxiops.catalog import VARIABLE_SETS

    for name, vs in VARIABLE_SETS.items():
        if vs == variables:
            return {"preset": name}
    raise DataError("offline cycling supports the named variable sets (testbed, production)")


def forecasts_from_analyses(forecaster: Forecaster, analyses: xr.Dataset, init_times: list[np.datetime64],
                            steps: int, out: Path, progress: bool = True) -> Path:
    """Roll out from analyses at ``init_times`` (each needs the analysis 6 h before too); one Zarr,
    dims (time, step, ...), appended one initialisation at a time."""
    out.parent.mkdir(parents=True, exist_ok=True)
    first = True
    for t in tqdm(init_times, desc="forecasts", disable=not progress):
        init = analyses.sel(time=[np.datetime64(t, "ns") - H6, np.datetime64(t, "ns")])
        leads = [s.drop_vars(["valid_time", "time"], errors="ignore") for s in forecaster.rollout(init, steps)]
        fc = xr.concat(leads, dim="step").expand_dims(time=[np.datetime64(t, "ns")])
        fc = fc.drop_vars([v for v in fc.data_vars if v not in analyses.data_vars])
        if first:
            fc.to_zarr(out, mode="w")
            first = False
        else:
            fc.to_zarr(out, append_dim="time")
    return out
