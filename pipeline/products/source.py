"""Reading an existing run back as a forecast generator, for re-publishing (``fuxiops publish RUN_DIR``).

A run directory is a published ``{products}/{run_id}/`` or a work directory
that holds ``forecast.zarr`` in the serving layout. Steps are loaded one at a
time, so re-publishing streams like a live forecast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import xarray as xr

from fuxiops.catalog import VARIABLES, VariableSet
from fuxiops.errors import DataError
from fuxiops.grids import get_grid, grid_from_coords

from .base import RunMeta
from .zarr_store import STORE_NAME


def find_store(run_dir: Path) -> Path:
    """The Zarr store of a run directory (or the store itself)."""
    run_dir = Path(run_dir)
    if run_dir.name.endswith(".zarr") and run_dir.is_dir():
        return run_dir
    store = run_dir / STORE_NAME
    if not store.is_dir():
        raise DataError(f"{run_dir} holds no {STORE_NAME}: re-publishing reads a run's serving store "
                        f"(a published run directory or a work directory with {STORE_NAME})")
    return store


def open_run(run_dir: Path) -> tuple[xr.Dataset, RunMeta]:
    """Open a run's store lazily and describe it as a :class:`RunMeta`."""
    store = find_store(run_dir)
    try:
        ds = xr.open_zarr(store, consolidated=None, decode_timedelta=False)
    except Exception as e:  # noqa: BLE001 - any reader failure is bad input here
        raise DataError(f"cannot open {store} as a Zarr store: {e}") from None
    attrs = ds.attrs
    for key in ("run_id", "reference_time"):
        if key not in attrs:
            raise DataError(f"{store} lacks the '{key}' attribute of a fuxiops run store")
    if "step" not in ds.dims:
        raise DataError(f"{store} has no 'step' dimension")
    ref = pd.Timestamp(attrs["reference_time"]).tz_localize(None).to_pydatetime()
    grid = get_grid(attrs["grid"]) if "grid" in attrs else grid_from_coords(ds.latitude.values, ds.longitude.values)
    unknown = [str(n) for n in ds.data_vars if n not in VARIABLES]
    if unknown:
        raise DataError(f"{store} holds variables the catalog does not know: {unknown}")
    names = [str(n) for n in ds.data_vars]
    upper = tuple(n for n in VARIABLES if n in names and VARIABLES[n].is_upper_air)
    surface = tuple(n for n in VARIABLES if n in names and not VARIABLES[n].is_upper_air
                    and VARIABLES[n].role == "state")
    diagnostics = tuple(n for n in VARIABLES if n in names and VARIABLES[n].role == "diagnostic")
    levels = tuple(int(x) for x in ds["level"].values) if upper else ()
    variables = VariableSet(upper_air=upper, levels=levels, surface=surface, diagnostics=diagnostics)
    model = attrs.get("model", {})
    if isinstance(model, str):
        try:
            model = json.loads(model)
        except json.JSONDecodeError:
            model = {"name": model}
    steps = tuple(int(s) for s in np.asarray(ds["step"].values))
    run = RunMeta(run_id=str(attrs["run_id"]), reference_time=ref, grid=grid, variables=variables, steps=steps,
                  model=model, status=str(attrs.get("status", "complete")),
                  deployment=str(attrs.get("deployment", "testbed")))
    return ds, run


def iter_steps(ds: xr.Dataset, run: RunMeta) -> Iterator[xr.Dataset]:
    """Yield one loaded step at a time (diagnostics dropped at step 0, where they are undefined)."""
    diag = list(run.variables.diagnostics)
    for i, step in enumerate(run.steps):
        one = ds.isel(step=i)
        if step == 0 and diag:
            one = one.drop_vars(diag)
        one = one.drop_vars([c for c in ("valid_time",) if c in one.coords]).load()
        yield one.assign_coords(step=np.int64(step), time=np.datetime64(pd.Timestamp(run.reference_time), "ns"))
