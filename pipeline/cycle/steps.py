"""The steps of one cycle as plain functions (no Prefect): background, analysis, forecast, states, verify.

The Prefect flows (``flows.py``) wrap these as tasks; keeping them plain makes
each step testable on its own and lets the forecast checkpoint every completed
lead time in the run's work directory, so a retried cycle resumes where a
killed one stopped and computes exactly the same numbers.

States travel as labelled datasets with a length-1 ``time`` dim (the valid
time) in the state convention of :mod:`fuxiops.state`; networks see channel
arrays.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator

import numpy as np
import xarray as xr

from fuxiops.catalog import VariableSet
from fuxiops.config import FuxiopsConfig
from fuxiops.errors import DataError
from fuxiops.grids import Grid
from fuxiops.logs import get_logger
from fuxiops.pipeline.cycle.store import StateStore
from fuxiops.pipeline.cycle.workdir import RunWorkDir, fingerprint
from fuxiops.state import from_channels, to_channels

log = get_logger("fuxiops.cycle")

TIME = "time"

#: Fault injection for resilience tests and drills: SIGKILL this process right after lead N is saved,
#: once per work directory (a marker file makes the retried cycle run through).
FAULT_KILL_AFTER_LEAD = "FUXIOPS_FAULT_KILL_AFTER_LEAD"


# ---------------------------------------------------------------------------------------------
# State <-> arrays
# ---------------------------------------------------------------------------------------------

def state_dataset(array: np.ndarray, variables: VariableSet, grid: Grid, valid_time: datetime,
                  attrs: dict[str, Any] | None = None) -> xr.Dataset:
    """A state dataset with a length-1 ``time`` dim from a ``(C_state, lat, lon)`` array."""
    return from_channels(np.asarray(array, dtype=np.float32)[None], variables.state_channels, grid,
                         leading={TIME: np.array([np.datetime64(valid_time, "ns")])}, attrs=attrs)


def state_array(ds: xr.Dataset, variables: VariableSet, grid: Grid, what: str = "state") -> np.ndarray:
    """``(C_state, lat, lon)`` float32 of a single state (a length-1 time dim or a scalar time)."""
    from fuxiops.state import check_dataset

    check_dataset(ds, variables, grid, what)
    arr = to_channels(ds, variables.state_channels)
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise DataError(f"{what} holds {arr.shape[0]} times, expected one")
        arr = arr[0]
    if arr.ndim != 3:
        raise DataError(f"{what} has unexpected dims {dict(ds.sizes)}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{what} has non-finite values")
    return np.ascontiguousarray(arr, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Background
# ---------------------------------------------------------------------------------------------

@dataclass
class Background:
    """The first guess of a cycle and the state one step earlier (the forecaster's second input)."""

    state: np.ndarray
    """Background at the cycle time, ``(C_state, lat, lon)``."""
    previous: np.ndarray
    """The analysis (or cold-start state) one step before the cycle time."""
    source: str
    """Where the background came from (``cycle 2023010100 +6h`` or ``cold start: reanalysis``)."""
    cold_start: bool = False
    cold_start_source: str | None = None
    notes: list[str] = field(default_factory=list)


def resolve_background(cfg: FuxiopsConfig, store: StateStore, cycle_time: datetime,
                       cold_start_loader: Callable[[FuxiopsConfig, datetime, str], tuple[np.ndarray, np.ndarray]],
                       force_cold_start: str | None = None) -> Background:
    """The own background (previous cycle's +6 h forecast) or, when none exists, a marked cold start."""
    vs, grid = cfg.variable_set, cfg.grid_spec
    prev_time = cycle_time - timedelta(hours=cfg.schedule.step_hours)
    if force_cold_start is None:
        bg = store.get("background", cycle_time)
        if bg is not None:
            state = state_array(bg, vs, grid, "stored background")
            prev_an = store.get("analysis", prev_time)
            notes = []
            if prev_an is not None:
                previous = state_array(prev_an, vs, grid, "stored previous analysis")
            else:
                # The background's producer committed it, so its analysis should exist; if an operator
                # deleted it, the cold-start source supplies the older input and we say so.
                previous, _ = cold_start_loader(cfg, prev_time, cfg.cold_start.source)
                notes.append(f"previous analysis {prev_time:%Y%m%d%H} missing: earlier input from "
                             f"{cfg.cold_start.source}")
            ptr = store.pointer("background", cycle_time) or {}
            src = ptr.get("provenance", {}).get("source", f"cycle {prev_time:%Y%m%d%H} +{cfg.schedule.step_hours}h")
            return Background(state, previous, str(src), notes=notes)
    source = force_cold_start or cfg.cold_start.source
    previous, state = cold_start_loader(cfg, cycle_time, source)
    log.warning("no background for %s: cold start from %s", f"{cycle_time:%Y%m%d%H}", source)
    return Background(state, previous, f"cold start: {source}", cold_start=True, cold_start_source=source)


# ---------------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------------

def analyse(assimilator: Any, background: np.ndarray, observations: xr.Dataset | None, n_used: int,
            cfg: FuxiopsConfig, cycle_time: datetime) -> tuple[np.ndarray, bool]:
    """The analysis array; with no usable observation the background is carried forward (returns True)."""
    vs, grid = cfg.variable_set, cfg.grid_spec
    if n_used == 0 or observations is None or not len(observations.data_vars):
        return background.copy(), True
    bg = state_dataset(background, vs, grid, cycle_time)
    an = assimilator.analyse(bg.isel({TIME: 0}), observations, np.datetime64(cycle_time, "ns"))
    arr = state_array(an, vs, grid, "analysis")
    return arr, False


# ---------------------------------------------------------------------------------------------
# Forecast with per-lead checkpoints
# ---------------------------------------------------------------------------------------------

@dataclass
class ForecastResult:
    steps: int
    resumed_from: int
    """Number of leads found complete in the work directory (0: a fresh forecast)."""


def run_forecast(forecaster: Any, previous: np.ndarray, analysis: np.ndarray, cycle_time: datetime, steps: int,
                 workdir: RunWorkDir, on_lead: Callable[[int], None] | None = None) -> ForecastResult:
    """Roll the forecaster out ``steps`` leads, saving each completed lead; resume after the last saved one.

    Both the fresh and the resumed path feed the network the float32 arrays that
    were saved, so a resumed forecast is bit-identical to an uninterrupted one.
    """
    c = forecaster.coords
    n_in = c.n_inputs
    if n_in > 2:
        raise DataError(f"the cycle keeps two states (previous analysis, analysis); the forecaster wants {n_in}")
    history0 = [previous, analysis][-n_in:]
    prov = forecaster.provenance()
    fp = fingerprint(*history0, model=prov, time=cycle_time.isoformat(), step_hours=c.step_hours)
    workdir.prepare(fp)
    workdir.save_initial(analysis)
    done = [k for k in workdir.completed_leads() if k <= steps]
    resumed = len(done)
    if resumed:
        log.info("resuming the forecast after lead %d h (%d of %d leads done)", resumed * c.step_hours, resumed,
                 steps)
    n_state = len(c.variables.state_channels)
    # The window holds the last n_in states; leads come back from their checkpoints when resuming.
    history = list(history0) + [workdir.load_lead(k)[:n_state] for k in done[-n_in:]]
    window = np.stack(history[-n_in:], axis=0).astype(np.float32)
    ref = np.datetime64(cycle_time, "ns")
    fault = int(os.environ.get(FAULT_KILL_AFTER_LEAD, "0") or 0)
    for k in range(resumed + 1, steps + 1):
        t = ref + np.timedelta64((k - 1) * c.step_hours, "h")
        out = np.asarray(forecaster.step(window, t), dtype=np.float32)
        if not np.all(np.isfinite(out)):
            raise DataError(f"{getattr(forecaster, 'name', 'forecaster')}: non-finite values at lead "
                            f"{k * c.step_hours} h")
        workdir.save_lead(k, out)
        if on_lead is not None:
            on_lead(k)
        if fault and k == fault:
            marker = workdir.path / ".fault-injected"
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                log.warning("fault injection: SIGKILL after lead %d", k)
                os.kill(os.getpid(), signal.SIGKILL)
        window = np.concatenate([window[1:], out[None, :n_state]], axis=0)
    return ForecastResult(steps=steps, resumed_from=resumed)


def forecast_states(forecaster: Any, analysis: np.ndarray, cycle_time: datetime, steps: int, workdir: RunWorkDir,
                    attrs: dict[str, Any] | None = None) -> Iterator[xr.Dataset]:
    """The forecast as a generator of labelled states (step 0 = the analysis), read from the work directory.

    One lead in memory at a time: product writers stream from it.
    """
    from fuxiops.models.base import make_state

    c = forecaster.coords
    ref = np.datetime64(cycle_time, "ns")
    yield make_state(analysis, c, ref, 0, attrs=attrs)
    for k in range(1, steps + 1):
        yield make_state(workdir.load_lead(k), c, ref, k * c.step_hours, attrs=attrs)
