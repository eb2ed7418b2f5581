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


def _grid_cycle(files: list[Path], cycle: pd.Timestamp, dep: FuxiopsConfig,
                stats: dict[str, dict[str, tuple[float, float]]] | None) -> tuple[xr.Dataset, dict[str, int]]:
    """One cycle through the real ingest path (readers -> QC) and gridding; runs in a worker process."""
    from fuxiops.pipeline.obs.gridding import grid_observations
    from fuxiops.pipeline.obs.ingest import ingest

    res = ingest(files, cycle_time=cycle.to_pydatetime(), config=dep, grid_output=False, mode="serial")
    totals = res.report["totals"]
    info = {"files": int(totals["files"]), "files_failed": int(totals["files_failed"]), "rows": res.table.num_rows}
    return grid_observations(res.table, cycle_time=cycle, config=dep, stats=stats), info


def _prepare_key(cycles: list[pd.Timestamp], stats: dict[str, Any]) -> str:
    """Identifies what a gridded store holds: its cycles and the fixed statistics."""
    import hashlib

    text = json.dumps({"cycles": [str(c) for c in cycles], "stats": stats}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class _GriddedStore:
    """A gridded-observation Zarr store of every cycle, filled one cycle at a time.

    The store is created once with all cycle times; ``present`` (time,) marks the
    cycles written, set only after a cycle's data, so an interrupted prepare
    resumes at the first missing cycle and never trusts a half-written one.
    """

    def __init__(self, path: Path, cycles: list[pd.Timestamp], key: str) -> None:
        self.path, self.cycles, self.key = path, cycles, key
        self.present = np.zeros(len(cycles), bool)
        if path.exists():
            try:
                ds = xr.open_zarr(path, consolidated=None)
                same = ds.attrs.get("fuxiops_prepare_key") == key and "present" in ds
            except Exception:  # noqa: BLE001 - an unreadable store is rebuilt
                same = False
            if same:
                self.present = ds["present"].values.astype(bool)
            else:
                log.warning("gridded store %s holds other cycles or statistics; rebuilding it", path)
                import shutil

                shutil.rmtree(path)

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def create(self, first: xr.Dataset, stats: dict[str, dict[str, tuple[float, float]]]) -> None:
        import dask.array as da

        n = len(self.cycles)
        times = np.asarray([c.to_datetime64() for c in self.cycles], "datetime64[ns]")
        data = {}
        for g, v in first.data_vars.items():
            data[g] = (("time", *v.dims), da.zeros((n, *v.shape), dtype=np.float32, chunks=(1, *v.shape)),
                       {**v.attrs, "normalisation": json.dumps(stats.get(str(g), {}))})
        data["present"] = (("time",), da.zeros(n, dtype=np.int8, chunks=1),
                           {"description": "1 where the cycle's observations are written"})
        coords = {k: c for k, c in first.coords.items() if "time" not in c.dims and k != "time"}
        ds = xr.Dataset(data, coords={**coords, "time": times},
                        attrs={**first.attrs, "fuxiops_prepare_key": self.key})
        ds.to_zarr(self.path, mode="w", compute=False)

    def write(self, i: int, ds: xr.Dataset) -> None:
        region = {"time": slice(i, i + 1)}
        block = ds.drop_vars(list(ds.coords)).expand_dims("time")  # coordinates are in the store already
        block.astype(np.float32).to_zarr(self.path, region=region)
        xr.Dataset({"present": (("time",), np.ones(1, np.int8))}).to_zarr(self.path, region=region)
        self.present[i] = True


def grid_world_observations(cfg: TrainConfig, norm: NormStats, progress: bool = True, workers: int = 1,
                            stop_after: int | None = None, sim_every_h: int = 6) -> dict[str, int]:
    """Ingest and grid every cycle of the training period, raw and simulated, into Zarr stores.

    Streams cycle by cycle into stores created up front (bounded memory for a
    year of cycles), resumes where an interrupted run stopped, and decodes
    ``workers`` cycles in parallel processes. Failed files are counted per
    cycle in ``training/prepare_report.json`` (the cycle keeps what decoded); a
    cycle without any observation file is left absent and the stages skip it. ``stop_after`` stops after that many
    new cycles (used to test resuming). ``sim_every_h`` (6, 12 or 24) grids the simulated observations only
    at cycles of those UTC hours: stage 2 then draws its samples from them, the unroll (raw observations)
    keeps every cycle, and a later prepare with a smaller value fills in the rest.
    """
    if sim_every_h not in (6, 12, 24):
        raise DataError(f"sim_every_h must be 6, 12 or 24 hours, got {sim_every_h}")
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    world = cfg.world_path
    dep = _deployment(cfg)
    cycles = [pd.Timestamp(t) for t in TrainingData(cfg).times]
    out = world / "training"
    out.mkdir(parents=True, exist_ok=True)
    stats_path, report_path = out / "obs_normalisation.json", out / "prepare_report.json"
    report: dict[str, Any] = json.loads(report_path.read_text()) if report_path.exists() else {}
    stats: dict[str, dict[str, tuple[float, float]]] | None = None
    if stats_path.exists() and report.get("norm_channels") == list(norm.channels) and \
            report.get("first_cycle") == str(cycles[0]):
        stats = {g: {k: (float(m), float(s)) for k, (m, s) in v.items()}
                 for g, v in json.loads(stats_path.read_text()).items()}
    counts: dict[str, int] = {}
    new = 0
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn")) if workers > 1 else None
    try:
        for kind in ("raw", "sim"):
            every = 6 if kind == "raw" else sim_every_h
            files = {i: cycle_files(world, kind, c) for i, c in enumerate(cycles) if c.hour % every == 0}
            files = {i: f for i, f in files.items() if f}
            if not files:
                continue
            if stats is None:
                first = []
                for i in list(files)[:STAT_CYCLES]:
                    res = _grid_cycle(files[i], cycles[i], dep, None)
                    first.append(res[0])
                stats = _fixed_stats(first, norm)
                stats_path.write_text(json.dumps(stats))
                report = {"norm_channels": list(norm.channels), "first_cycle": str(cycles[0])}
                report_path.write_text(json.dumps(report))
            store = _GriddedStore(out / f"gridded_{kind}.zarr", cycles, _prepare_key(cycles, stats))
            todo = [i for i in files if not store.present[i]]
            if stop_after is not None:
                todo = todo[:max(0, stop_after - new)]
            submit = (lambda i: pool.submit(_grid_cycle, files[i], cycles[i], dep, stats)) if pool else None
            ahead = 2 * workers
            pending = {i: submit(i) for i in todo[:ahead]} if pool else {}
            for k, i in enumerate(tqdm(todo, desc=f"grid {kind}", disable=not progress)):
                if pool:
                    ds, info = pending.pop(i).result()
                    if k + ahead < len(todo):
                        pending[todo[k + ahead]] = submit(todo[k + ahead])
                else:
                    ds, info = _grid_cycle(files[i], cycles[i], dep, stats)
                if not store.exists:  # the first cycle written gives the store its layout
                    store.create(ds, stats)
                store.write(i, ds)
                report.setdefault(kind, {})[str(cycles[i])] = info
                new += 1
                if info["files_failed"]:
                    log.warning("%s cycle %s: %d of %d observation files failed", kind, cycles[i],
                                info["files_failed"], info["files"])
                if new % 50 == 0:
                    report_path.write_text(json.dumps(report))
            report_path.write_text(json.dumps(report))
            counts[kind] = int(store.present.sum())
            if stop_after is not None and new >= stop_after:
                break
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    if not counts:
        raise DataError(f"no observation files under {world / 'obs'} for the training period")
    return counts


def prepare_campaign(cfg: TrainConfig, grid_obs: bool = True, progress: bool = True,
                     workers: int = 1, sim_every_h: int = 6) -> dict[str, Any]:
    norm = prepare_normalisation(cfg)
    summary: dict[str, Any] = {"normalisation": f"{len(norm.channels)} channels from {norm.n_samples} states"}
    if grid_obs:
        summary["gridded cycles"] = grid_world_observations(cfg, norm, progress, workers, sim_every_h=sim_every_h)
    return summary
