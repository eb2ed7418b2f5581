"""Build a testbed world: truth, reanalysis, NWP, static fields and BUFR observations in one folder.

Layout under ``DIR``::

    world.json                          settings, seed, versions (what was built)
    truth.zarr  reanalysis.zarr         time, level, latitude, longitude (6-hourly)
    nwp.zarr                            time (init), step (h), level, latitude, longitude
    static.zarr                         land-sea mask, surface geopotential
    obs/raw/YYYYMMDDHH/<type>_YYYYMMDDHH.bufr   truth sampled by instruments
    obs/sim/YYYYMMDDHH/<type>_YYYYMMDDHH.bufr   reanalysis sampled, flagged simulated
    _build/                             resume state (model state per finished day)

The build goes one day at a time (one Zarr time chunk). After each day the
truth model state of the next day is saved; a resumed build starts from the
first unfinished day and redoes it whole, so the stores come out byte-identical
to an uninterrupted build with the same settings.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import numpy as np
import xarray as xr

from fuxiops.catalog import TESTBED, VariableSet
from fuxiops.errors import DataError, FuxiopsError
from fuxiops.grids import TESTBED_GRID, Grid, get_grid
from fuxiops.pipeline.world.model import (HOURS_PER_WINDOW, NWP_CORE, TRUTH_CORE, CoreConfig, get_core,
                                          ModelState)
from fuxiops.pipeline.world.reanalysis import Reanalysis, ReanalysisErrors

WORLD_FORMAT = 1
OBS_TYPES: tuple[str, ...] = ("synop", "temp", "amdar", "gnssro", "mwts")
MAX_DAYS = 3660


class WorldError(FuxiopsError, ValueError):
    """Invalid world settings, or a folder that holds another world."""


def parse_start(start: str | datetime) -> datetime:
    """A start time on a 6-hour boundary (``2023-01-01T00``, ``2023-01-01T06:00``, ``2023-01-01``)."""
    if isinstance(start, datetime):
        dt = start
    else:
        s = str(start).strip().rstrip("Z")
        dt = None
        for fmt in ("%Y-%m-%dT%H", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d", "%Y%m%d%H"):
            try:
                dt = datetime.strptime(s, fmt)
                break
            except ValueError:
                continue
        if dt is None:
            raise WorldError(f"invalid start {start!r}; expected e.g. 2023-01-01T00 (UTC, on a 6-hour boundary)")
    if dt.tzinfo is not None:
        dt = dt.replace(tzinfo=None)
    if dt.minute or dt.second or dt.microsecond or dt.hour % HOURS_PER_WINDOW:
        raise WorldError(f"start {dt.isoformat()} must fall on 00, 06, 12 or 18 UTC exactly")
    if not 1900 <= dt.year <= 2200:
        raise WorldError(f"start year {dt.year} out of range 1900..2200")
    return dt


@dataclass(frozen=True)
class WorldSpec:
    """Everything that determines a world's content (the build is a function of this)."""

    start: datetime
    days: int
    grid: str = TESTBED_GRID
    seed: int = 0
    truth: CoreConfig = TRUTH_CORE
    nwp: CoreConfig = NWP_CORE
    variables: VariableSet = TESTBED
    reanalysis_errors: ReanalysisErrors = ReanalysisErrors()
    decorrelation_days: int = 5
    nwp_every_h: int = 12
    nwp_max_lead_h: int = 240
    obs_types: tuple[str, ...] = OBS_TYPES
    with_nwp: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.days, int) or not 1 <= self.days <= MAX_DAYS:
            raise WorldError(f"days must be an integer in 1..{MAX_DAYS}, got {self.days!r}")
        if not isinstance(self.seed, int) or self.seed < 0 or self.seed >= 2**32:
            raise WorldError(f"seed must be an integer in 0..2**32-1, got {self.seed!r}")
        get_grid(self.grid)
        if self.nwp_every_h <= 0 or 24 % self.nwp_every_h or self.nwp_every_h % HOURS_PER_WINDOW:
            raise WorldError(f"nwp_every_h must be 6, 12 or 24, got {self.nwp_every_h}")
        if self.nwp_max_lead_h < 0 or self.nwp_max_lead_h % HOURS_PER_WINDOW or self.nwp_max_lead_h > 720:
            raise WorldError(f"nwp_max_lead_h must be a multiple of 6 in 0..720, got {self.nwp_max_lead_h}")
        bad = [t for t in self.obs_types if t not in OBS_TYPES]
        if bad:
            raise WorldError(f"unknown observation type {bad[0]!r}; allowed: {', '.join(OBS_TYPES)}")
        if not 0 <= self.decorrelation_days <= 60:
            raise WorldError(f"decorrelation_days must be in 0..60, got {self.decorrelation_days}")
        extra = [v for v in self.variables.upper_air if v not in ("z", "t", "u", "v")] + \
            [v for v in self.variables.surface if v not in ("t2m", "u10", "v10", "msl")]
        if extra:
            raise WorldError(f"the dry Held-Suarez world has no {extra[0]!r} (no humidity or precipitation); "
                             "use the 'testbed' variable set")

    @property
    def grid_spec(self) -> Grid:
        return get_grid(self.grid)

    @property
    def n_times(self) -> int:
        return self.days * 24 // HOURS_PER_WINDOW

    @property
    def times(self) -> np.ndarray:
        return np.asarray([np.datetime64(self.start + timedelta(hours=HOURS_PER_WINDOW * i), "ns")
                           for i in range(self.n_times)])

    @property
    def inits_per_day(self) -> int:
        return 24 // self.nwp_every_h

    @property
    def init_times(self) -> np.ndarray:
        return np.asarray([np.datetime64(self.start + timedelta(hours=self.nwp_every_h * i), "ns")
                           for i in range(self.days * self.inits_per_day)])

    @property
    def steps(self) -> np.ndarray:
        return np.arange(0, self.nwp_max_lead_h + 1, HOURS_PER_WINDOW, dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {"format": WORLD_FORMAT, "start": self.start.strftime("%Y-%m-%dT%H:%M:%SZ"), "days": self.days,
                "grid": self.grid, "seed": self.seed, "truth": self.truth.to_dict(), "nwp": self.nwp.to_dict(),
                "variables": self.variables.to_dict(), "reanalysis_errors": self.reanalysis_errors.to_dict(),
                "decorrelation_days": self.decorrelation_days, "nwp_every_h": self.nwp_every_h,
                "nwp_max_lead_h": self.nwp_max_lead_h, "obs_types": list(self.obs_types),
                "with_nwp": self.with_nwp}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WorldSpec":
        return cls(start=parse_start(d["start"]), days=int(d["days"]), grid=d["grid"], seed=int(d["seed"]),
                   truth=CoreConfig.from_dict(d["truth"]), nwp=CoreConfig.from_dict(d["nwp"]),
                   variables=VariableSet.from_dict(d["variables"]),
                   reanalysis_errors=ReanalysisErrors(**d["reanalysis_errors"]),
                   decorrelation_days=int(d["decorrelation_days"]), nwp_every_h=int(d["nwp_every_h"]),
                   nwp_max_lead_h=int(d["nwp_max_lead_h"]), obs_types=tuple(d["obs_types"]),
                   with_nwp=bool(d.get("with_nwp", True)))


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("fuxiops", "dinosaur", "jax", "jaxlib", "numpy", "xarray", "zarr", "eccodes"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


@dataclass
class World:
    """A built (or partly built) world folder."""

    root: Path
    spec: WorldSpec
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def truth_path(self) -> Path:
        return self.root / "truth.zarr"

    @property
    def reanalysis_path(self) -> Path:
        return self.root / "reanalysis.zarr"

    @property
    def nwp_path(self) -> Path:
        return self.root / "nwp.zarr"

    @property
    def static_path(self) -> Path:
        return self.root / "static.zarr"

    @property
    def obs_root(self) -> Path:
        return self.root / "obs"

    @property
    def complete(self) -> bool:
        return _days_done(self.root) >= self.spec.days

    def open(self, name: str) -> xr.Dataset:
        """Open one store: ``truth``, ``reanalysis``, ``nwp`` or ``static``."""
        from fuxiops.pipeline.world.store import open_store
        paths = {"truth": self.truth_path, "reanalysis": self.reanalysis_path, "nwp": self.nwp_path,
                 "static": self.static_path}
        if name not in paths:
            raise WorldError(f"unknown world store {name!r}; allowed: {', '.join(paths)}")
        if not paths[name].exists():
            raise DataError(f"{paths[name]} does not exist (world built without it, or not built yet)")
        return open_store(paths[name])

    @property
    def truth(self) -> xr.Dataset:
        return self.open("truth")

    @property
    def reanalysis(self) -> xr.Dataset:
        return self.open("reanalysis")

    @property
    def nwp(self) -> xr.Dataset:
        return self.open("nwp")

    @property
    def static(self) -> xr.Dataset:
        return self.open("static")

    def obs_files(self, kind: str = "raw", obs_type: str | None = None) -> list[Path]:
        """BUFR files, ``kind`` ``raw`` or ``sim``, optionally of one type, in time order."""
        if kind not in ("raw", "sim"):
            raise WorldError(f"observation kind must be 'raw' or 'sim', got {kind!r}")
        pattern = f"{obs_type}_*.bufr" if obs_type else "*.bufr"
        return sorted((self.obs_root / kind).glob(f"*/{pattern}"))

    def background_pool(self, min_lead_h: int = 6, max_lead_h: int = 180) -> xr.Dataset:
        """The offline NWP background pool: forecasts at leads ``min_lead_h``..``max_lead_h``."""
        ds = self.nwp
        return ds.sel(step=[s for s in ds["step"].values if min_lead_h <= s <= max_lead_h])


def _days_done(root: Path) -> int:
    p = root / "_build" / "progress.json"
    if not p.exists():
        return 0
    return int(json.loads(p.read_text())["days_done"])


def open_world(root: Path | str) -> World:
    """Open a world folder written by :func:`build_world`."""
    root = Path(root)
    meta = root / "world.json"
    if not meta.is_file():
        raise DataError(f"{root} is not a testbed world (no world.json)")
    info = json.loads(meta.read_text())
    return World(root, WorldSpec.from_dict(info["spec"]), info)


def static_dataset(grid: Grid) -> xr.Dataset:
    """Land-sea mask (real coastlines from global_land_mask, a static network input only: the
    Held-Suarez atmosphere does not see it) and surface geopotential (zero: the world is flat)."""
    from fuxiops.state import coord_attrs
    lat2, lon2 = np.meshgrid(grid.latitudes, grid.longitudes, indexing="ij")
    try:
        from global_land_mask import globe
        lsm = globe.is_land(lat2, np.where(lon2 >= 180, lon2 - 360, lon2)).astype(np.float32)
        source = "global_land_mask (real coastlines; not seen by the Held-Suarez dynamics)"
    except ImportError:  # pragma: no cover - optional package
        lsm = np.zeros(grid.shape, np.float32)
        source = "all sea (global_land_mask not installed)"
    ca = coord_attrs()
    return xr.Dataset(
        {"lsm": (("latitude", "longitude"), lsm, {"long_name": "Land-sea mask", "units": "1",
                                                  "standard_name": "land_binary_mask", "GRIB_paramId": 172,
                                                  "GRIB_shortName": "lsm", "source": source}),
         "z": (("latitude", "longitude"), np.zeros(grid.shape, np.float32),
               {"long_name": "Surface geopotential", "units": "m2 s-2", "standard_name": "surface_geopotential",
                "GRIB_paramId": 129, "GRIB_shortName": "z", "comment": "Held-Suarez world is flat"})},
        coords={"latitude": ("latitude", grid.latitudes, ca["latitude"]),
                "longitude": ("longitude", grid.longitudes, ca["longitude"])},
        attrs={"grid": grid.name, "title": "fuxiops testbed world static fields"})


ProgressFn = Callable[[int, int, str], None]


def build_world(out: Path | str, start: str | datetime = "2023-01-01T00", days: int = 1, grid: str = TESTBED_GRID,
                seed: int = 0, *, spec: WorldSpec | None = None, progress: ProgressFn | None = None,
                stop_after_days: int | None = None, obs_workers: int | None = None) -> World:
    """Build (or resume building) a world in ``out``; returns the :class:`World`.

    ``progress(done_days, total_days, message)`` is called as days finish;
    ``stop_after_days`` stops early (used to test resuming). ``obs_workers``
    processes write the observations of finished days while the models
    integrate the next ones (0: in this process; default: one per core, at
    most four); the files do not depend on it.
    """
    if spec is None:
        spec = WorldSpec(start=parse_start(start), days=days, grid=grid, seed=seed)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    meta_path = root / "world.json"
    info = {"spec": spec.to_dict(), "versions": _versions(),
            "stores": {"truth": "truth.zarr", "reanalysis": "reanalysis.zarr", "nwp": "nwp.zarr",
                       "static": "static.zarr", "obs": "obs/{raw,sim}/YYYYMMDDHH/<type>_YYYYMMDDHH.bufr"}}
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if old.get("spec") != info["spec"]:
            raise WorldError(f"{root} already holds a world built with other settings (see its world.json); "
                             "choose another --out folder or delete that one")
    elif any(root.iterdir()):
        raise WorldError(f"{root} is not empty and holds no world; choose an empty or new folder")
    else:
        tmp = meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(info, indent=2, sort_keys=True))
        tmp.replace(meta_path)
    _Builder(root, spec, progress, default_obs_workers() if obs_workers is None else obs_workers).run(stop_after_days)
    return open_world(root)


def default_obs_workers() -> int:
    """One observation writer per core, at most four: writing observations costs about as much as the
    models (T42 truth, T21 NWP), so the main process keeps one core busy and the writers share the rest."""
    return max(1, min(4, os.cpu_count() or 1))


_worker_maker = None  # the ObservationMaker of an observation-writer process


def _init_obs_writer(obs_root: str, spec: dict[str, Any]) -> None:
    global _worker_maker
    import threading
    import time

    from fuxiops.pipeline.world.obs.generate import ObservationMaker
    _worker_maker = ObservationMaker(Path(obs_root), WorldSpec.from_dict(spec))
    parent = os.getppid()

    def exit_with_parent() -> None:  # a killed build must not leave writers behind
        while os.getppid() == parent:
            time.sleep(2.0)
        os._exit(1)
    threading.Thread(target=exit_with_parent, daemon=True).start()


def _write_obs_day(day_start: datetime, truth: list, reanalysis: list) -> None:
    assert _worker_maker is not None
    _worker_maker.make_day(day_start, truth, reanalysis)


class _Builder:
    def __init__(self, root: Path, spec: WorldSpec, progress: ProgressFn | None, obs_workers: int = 0) -> None:
        self.root, self.spec, self.progress = root, spec, progress or (lambda d, n, m: None)
        self.obs_workers = obs_workers
        self.work = root / "_build"
        self.work.mkdir(exist_ok=True)

    def _set_done(self, days: int) -> None:
        tmp = self.work / "progress.json.tmp"
        tmp.write_text(json.dumps({"days_done": days}))
        tmp.replace(self.work / "progress.json")

    def _create_stores(self) -> None:
        from fuxiops.pipeline.world.store import create_store
        spec, g = self.spec, self.spec.grid_spec
        steps_per_day = 24 // HOURS_PER_WINDOW
        base = {"title": "", "world_seed": spec.seed, "grid": spec.grid, "Conventions": "CF-1.8",
                "source": "fuxiops testbed world (dinosaur Held-Suarez)"}
        create_store(self.root / "truth.zarr", g, spec.variables, {"time": spec.times}, {"time": steps_per_day},
                     {**base, "title": "Testbed truth (nature run)", "kind": "truth"})
        create_store(self.root / "reanalysis.zarr", g, spec.variables, {"time": spec.times}, {"time": steps_per_day},
                     {**base, "title": "Testbed reanalysis (truth + documented errors)", "kind": "reanalysis"})
        if spec.with_nwp:
            create_store(self.root / "nwp.zarr", g, spec.variables, {"time": spec.init_times, "step": spec.steps},
                         {"time": 1, "step": 1}, {**base, "title": "Testbed operational NWP forecasts", "kind": "nwp",
                                       "model": f"T{spec.nwp.truncation}L{spec.nwp.layers}"})
        static = self.root / "static.zarr"
        if not static.exists():
            import warnings
            tmp = self.root / "static.zarr.creating"
            if tmp.exists():
                shutil.rmtree(tmp)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                static_dataset(g).to_zarr(tmp, mode="w", consolidated=True, zarr_format=2)
            tmp.rename(static)

    def run(self, stop_after_days: int | None) -> None:
        from fuxiops.pipeline.world.postprocess import Regridder
        from fuxiops.pipeline.world.seeds import initial_state
        spec = self.spec
        done = _days_done(self.root)
        if done >= spec.days:
            self.progress(spec.days, spec.days, "already complete")
            return
        self._create_stores()
        core = get_core(spec.truth)
        lat, lon = core.nodal_latlon
        regrid = Regridder(lat[::-1], lon, spec.grid_spec)
        rean = Reanalysis(core, spec.seed, spec.reanalysis_errors)
        nwp = None
        if spec.with_nwp:
            from fuxiops.pipeline.world.nwp import NwpModel
            nwp = NwpModel(spec.nwp, spec.truth, spec.grid_spec, spec.variables)
        obs = pool = None
        if spec.obs_types and self.obs_workers > 0:
            from concurrent.futures import ProcessPoolExecutor
            from multiprocessing import get_context
            pool = ProcessPoolExecutor(self.obs_workers, mp_context=get_context("spawn"), initializer=_init_obs_writer,
                                       initargs=(str(self.root / "obs"), spec.to_dict()))
        elif spec.obs_types:
            from fuxiops.pipeline.world.obs.generate import ObservationMaker
            obs = ObservationMaker(self.root / "obs", spec)
        state_file = lambda d: self.work / f"truth_day{d:05d}.npz"
        if done == 0 and not state_file(0).exists():
            self.progress(0, spec.days, f"seed {spec.seed}: decorrelating for {spec.decorrelation_days} days")
            initial_state(spec.seed, core, spec.decorrelation_days).save(state_file(0), day=0)
        last = spec.days if stop_after_days is None else min(spec.days, done + stop_after_days)
        # days whose models are written but whose observations are still being written: a day counts as done
        # (progress.json, the resume point) once everything of it and of every earlier day is on disk
        writing: dict[int, Any] = {}

        def settle(wait_all: bool) -> None:
            while writing:
                first = min(writing)
                if not (wait_all or len(writing) > 2 * self.obs_workers or writing[first].done()):
                    break
                writing.pop(first).result()  # re-raises a writer's error: the build stops at that day
                finish(first)

        def finish(day: int) -> None:
            nonlocal done
            done = day + 1
            self._set_done(done)
            state_file(day).unlink(missing_ok=True)  # a resume needs only the state of the first undone day
            self.progress(done, spec.days, f"day {done} done")

        try:
            for day in range(done, last):
                s, truth_arrays, rean_arrays, times = self._truth_day(day, state_file(day), core, rean, regrid, nwp)
                s.save(state_file(day + 1), day=day + 1)
                if pool is not None:
                    writing[day] = pool.submit(_write_obs_day, times, truth_arrays, rean_arrays)
                    settle(wait_all=False)
                    continue
                if obs is not None:
                    obs.make_day(times, truth_arrays, rean_arrays)
                    self.progress(day, spec.days, f"day {day + 1}: observations")
                finish(day)
            settle(wait_all=True)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    def _truth_day(self, day: int, start_state: Path, core, rean, regrid, nwp):
        """Integrate one day from ``start_state``; write its truth, reanalysis and NWP.

        Returns the model state of the next day, the day's truth and reanalysis arrays (5 times, 0-24 h)
        and the day's start time.
        """
        from fuxiops.pipeline.world.postprocess import state_dataset, to_state_arrays
        from fuxiops.pipeline.world.store import write_region
        spec, g = self.spec, self.spec.grid_spec
        per_day = 24 // HOURS_PER_WINDOW
        s, _ = ModelState.load(start_state)
        core.check_state(s, f"resume state of day {day}")
        truth_arrays, rean_arrays, rean_states = [], [], []
        for k in range(per_day + 1):
            ti = day * per_day + k
            truth_arrays.append(to_state_arrays(core.nodal(s), regrid, spec.variables))
            rs = rean.state(s, ti)
            rean_states.append(rs)
            rean_arrays.append(to_state_arrays(core.nodal(rs), regrid, spec.variables))
            if k < per_day:
                s = core.advance(s, 1)
        times = spec.start + timedelta(days=day)
        tcoord = {"time": np.asarray([np.datetime64(times + timedelta(hours=6 * k), "ns") for k in range(per_day)])}
        write_region(self.root / "truth.zarr",
                     state_dataset(truth_arrays[:per_day], tcoord, g, spec.variables), {"time": day * per_day})
        write_region(self.root / "reanalysis.zarr",
                     state_dataset(rean_arrays[:per_day], tcoord, g, spec.variables), {"time": day * per_day})
        self.progress(day, spec.days, f"day {day + 1}: truth + reanalysis")
        if nwp is not None:
            # forecasts of the day's cycles run as one batch and stream to disk lead by lead
            every = spec.nwp_every_h // HOURS_PER_WINDOW
            inits = [rean_states[k] for k in range(0, per_day, every)]
            t_inits = spec.init_times[day * len(inits):(day + 1) * len(inits)]
            for j, (lead, per_init) in enumerate(nwp.forecast(inits, spec.nwp_max_lead_h)):
                ds = state_dataset(per_init, {"time": t_inits, "step": np.asarray([lead])}, g, spec.variables)
                write_region(self.root / "nwp.zarr", ds, {"time": day * len(inits), "step": j})
            self.progress(day, spec.days, f"day {day + 1}: NWP")
        return s, truth_arrays, rean_arrays, times
