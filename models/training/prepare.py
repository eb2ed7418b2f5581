"""``fuxiops train prepare``: what every stage reads, computed once per campaign.

* normalisation statistics of the state (reanalysis, training period);
* gridded observations of every cycle, raw and simulated, decoded from the
  world's BUFR files by the real ingest path (readers -> QC -> gridding), with
  *fixed* per-channel normalisation so that a value means the same in every
  cycle: state channels (t2m, t850, ...) use the reanalysis statistics, other
  channels (brightness temperatures, refractivity) the mean of their first
  cycles' statistics. The fixed statistics are saved next to the stores
  (``obs_normalisation.json``) and travel with the assimilator checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from tqdm import tqdm

from fuxiops.config import FuxiopsConfig, load_config
from fuxiops.errors import DataError
from fuxiops.logs import get_logger
from fuxiops.models.normalisation import NormStats
from fuxiops.models.training.config import TrainConfig
from fuxiops.models.training.stages import TrainingData, prepare_normalisation

log = get_logger("fuxiops.models.training.prepare")

#: Cycles used to fix the statistics of channels that do not observe a state channel.
STAT_CYCLES = 8


def _deployment(cfg: TrainConfig) -> FuxiopsConfig:
    return load_config(None, grid=cfg.grid, variables={"preset": cfg.variables})


def cycle_files(world: Path, kind: str, cycle: pd.Timestamp, window: tuple[int, int] = (-3, 5)) -> list[Path]:
    """BUFR files of the hourly folders that can hold reports of a cycle's window."""
    files: list[Path] = []
    for h in range(window[0], window[1]):
        d = world / "obs" / kind / (cycle + pd.Timedelta(hours=h)).strftime("%Y%m%d%H")
        if d.is_dir():
            files += sorted(d.glob("*.bufr"))
    return files


def _fixed_stats(first: list[xr.Dataset], norm: NormStats) -> dict[str, dict[str, tuple[float, float]]]:
    state = {c: (float(m), float(s)) for c, m, s in zip(norm.channels, norm.mean, norm.std)}
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for g in first[0].data_vars:
        per: dict[str, list[tuple[float, float]]] = {}
        for ds in first:
            for name, (m, s) in json.loads(ds[g].attrs["normalisation"]).items():
                per.setdefault(name, []).append((m, s))
        out[str(g)] = {name: state.get(name, (float(np.mean([m for m, _ in v])),
                                                float(max(np.mean([s for _, s in v]), 1e-6))))
                       for name, v in per.items()}
    return out


def grid_world_observations(cfg: TrainConfig, norm: NormStats, progress: bool = True) -> dict[str, int]:
    """Ingest and grid every cycle of the training period, raw and simulated, into Zarr stores."""
    from fuxiops.pipeline.obs.gridding import grid_observations
    from fuxiops.pipeline.obs.ingest import ingest

    world = cfg.world_path
    dep = _deployment(cfg)
    data = TrainingData(cfg)
    cycles = [pd.Timestamp(t) for t in data.times]
    out = world / "training"
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    stats: dict[str, dict[str, tuple[float, float]]] | None = None
    stats_path = out / "obs_normalisation.json"
    for kind in ("raw", "sim"):
        tables = []
        for c in tqdm(cycles, desc=f"ingest {kind}", disable=not progress):
            files = cycle_files(world, kind, c)
            if not files:
                continue
            res = ingest(files, cycle_time=c.to_pydatetime(), config=dep, grid_output=False, mode="serial")
            tables.append((c, res.table))
        if not tables:
            continue
        if stats is None:
            first = [grid_observations(t, cycle_time=c, config=dep) for c, t in tables[:STAT_CYCLES]]
            stats = _fixed_stats(first, norm)
            stats_path.write_text(json.dumps(stats))
        parts = []
        for c, t in tqdm(tables, desc=f"grid {kind}", disable=not progress):
            parts.append(grid_observations(t, cycle_time=c, config=dep, stats=stats)
                         .expand_dims(time=[c.to_datetime64()]))
        ds = xr.concat(parts, dim="time")
        for g in ds.data_vars:
            ds[g].attrs["normalisation"] = json.dumps(stats.get(str(g), {}))
        target = out / f"gridded_{kind}.zarr"
        tmp = out / f"gridded_{kind}.zarr.tmp"
        ds.chunk({"time": 1}).to_zarr(tmp, mode="w")
        if target.exists():
            import shutil

            shutil.rmtree(target)
        tmp.rename(target)
        counts[kind] = len(parts)
    if not counts:
        raise DataError(f"no observation files under {world / 'obs'} for the training period")
    return counts


def prepare_campaign(cfg: TrainConfig, grid_obs: bool = True, progress: bool = True) -> dict[str, Any]:
    norm = prepare_normalisation(cfg)
    summary: dict[str, Any] = {"normalisation": f"{len(norm.channels)} channels from {norm.n_samples} states"}
    if grid_obs:
        summary["gridded cycles"] = grid_world_observations(cfg, norm, progress)
    return summary
