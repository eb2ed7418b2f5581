"""Run a forecast from a state store and stream it to a Zarr forecast store, one lead at a time.

The initial states (x_{T-6h}, x_T) are read from any Zarr store with the state
convention (dims ``time``, ``level``, ``latitude``, ``longitude``), e.g. the
testbed reanalysis. Every state the rollout yields is appended along ``step``
to a store written aside (``.<name>.partial``) and renamed into place when
complete, so a reader never sees a half-written forecast and memory does not
grow with the number of steps. The cycle uses the same functions.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import xarray as xr

from fuxiops.errors import DataError
from fuxiops.models.base import STEP, TIME, VALID_TIME, Forecaster, select_inputs

ProgressFn = Callable[[int, xr.Dataset], None]


def open_store(path: str | Path) -> xr.Dataset:
    """Open a Zarr store lazily, with or without consolidated metadata (no fallback warning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*consolidated metadata.*", category=RuntimeWarning)
        return xr.open_zarr(str(path), consolidated=None)


def open_initial_state(store: str | Path, forecaster: Forecaster, time: np.datetime64 | str | None
                       ) -> xr.Dataset:
    """The forecaster's input times read (lazily, then only those times) from a Zarr store."""
    p = Path(store)
    if not p.exists():
        raise DataError(f"initial-state store {p} does not exist")
    try:
        ds = open_store(p)
    except Exception as e:  # zarr raises many types for a non-store folder
        raise DataError(f"cannot open {p} as a Zarr store: {e}") from None
    return select_inputs(ds, forecaster.coords, time, what=f"initial state from {p}")


def _lead(ds: xr.Dataset) -> xr.Dataset:
    """One yielded state as a 1-step slab: ``step`` dim with ``valid_time`` along it, scalar ``time``."""
    out = ds.expand_dims(STEP)
    out = out.assign_coords({VALID_TIME: (STEP, np.atleast_1d(ds[VALID_TIME].values))})
    for name in out.variables:
        out[name].encoding = {}
    # Fixed time units: xarray would otherwise pick units from the first slab and mis-encode later ones.
    out[VALID_TIME].encoding = {"units": "hours since 1970-01-01", "dtype": "int64"}
    out[TIME].encoding = {"units": "hours since 1970-01-01", "dtype": "int64"}
    return out


def prefetched(items: Iterable[Any], depth: int = 1) -> Iterator[Any]:
    """Iterate ``items`` in a background thread, at most ``depth`` items ahead of the consumer.

    A rollout's next step (torch, which releases the GIL) then runs while the
    consumer encodes and writes the previous lead, instead of after it. Memory
    grows by ``depth`` states at most; an exception in the producer is raised
    here, and a consumer that stops early stops the producer at its next item.
    """
    import queue
    import threading

    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    source = iter(items)

    def produce() -> None:
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as e:  # handed to the consumer, which re-raises it
            q.put(("error", e))
        finally:
            close = getattr(source, "close", None)
            if close is not None:  # run the source's own clean-up in the thread that iterated it
                close()

    worker = threading.Thread(target=produce, name="rollout-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            worker.join(timeout=0.2)


def write_forecast(states: Iterable[xr.Dataset], out: str | Path, attrs: dict[str, Any] | None = None,
                   overwrite: bool = False, progress: ProgressFn | None = None) -> Path:
    """Append each state along ``step`` to a Zarr store written aside, then rename it to ``out``.

    The states are produced one ahead in a background thread (:func:`prefetched`), so
    computing lead k+1 overlaps writing lead k. Returns ``out``. Refuses an existing
    ``out`` unless ``overwrite``.
    """
    import zarr
    from zarr.codecs import BloscCodec

    out = Path(out)
    if out.exists() and not overwrite:
        raise DataError(f"output store {out} exists; remove it or pass overwrite")
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    n = 0
    full_attrs: dict[str, Any] = {}
    try:
        for ds in prefetched(states):
            slab = _lead(ds)
            if n == 0:
                full_attrs = {**slab.attrs, **(attrs or {}), "status": "writing"}
            # xarray rewrites the group attributes on every append: give it the full set each time.
            slab.attrs = dict(full_attrs)
            if n == 0:
                # One chunk per variable and lead; Blosc-LZ4 with byte shuffle writes a 0.25 deg lead about
                # 4x faster than zarr's default zstd at a similar size (this store is read back within the
                # cycle and by `fuxiops publish`, so speed matters more than the last percent of size).
                codec = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
                enc = {name: {"chunks": (1, *slab[name].shape[1:]), "compressors": [codec]}
                       for name in slab.data_vars}
                slab.to_zarr(str(tmp), mode="w-", encoding=enc, consolidated=False, zarr_format=3)
            else:
                # Only step-dependent variables are appended; coordinates without ``step`` are already there.
                slab = slab.drop_vars([v for v in slab.variables if STEP not in slab[v].dims])
                slab.to_zarr(str(tmp), append_dim=STEP, consolidated=False, zarr_format=3)
            if progress is not None:
                progress(n, ds)
            n += 1
        if n == 0:
            raise DataError("the forecast produced no state")
        group = zarr.open_group(str(tmp), mode="r+")
        group.attrs["status"] = "complete"
        with warnings.catch_warnings():
            # Consolidated metadata is what the serving layer reads (docs/architecture.md).
            warnings.simplefilter("ignore", category=UserWarning)
            zarr.consolidate_metadata(str(tmp))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def run_forecast(forecaster: Forecaster, init_store: str | Path, out: str | Path, steps: int,
                 time: np.datetime64 | str | None = None, overwrite: bool = False,
                 progress: ProgressFn | None = None, extra_attrs: dict[str, Any] | None = None) -> Path:
    """Forecast ``steps`` leads from the states in ``init_store`` at ``time`` (default: its last time)."""
    initial = open_initial_state(init_store, forecaster, time)
    ref = np.datetime64(initial[TIME].values[-1], "ns")
    run_id = str(ref.astype("datetime64[h]")).replace("-", "").replace("T", "")
    attrs = {"run_id": run_id, "reference_time": str(ref.astype("datetime64[s]")) + "Z",
             "model": forecaster.name, "grid": forecaster.coords.grid.name,
             "model_provenance": json.dumps(forecaster.provenance(), default=str), "initial_state_source": str(init_store),
             **(extra_attrs or {})}
    return write_forecast(forecaster.rollout(initial, steps), out, attrs, overwrite, progress)


def iter_leads(store: str | Path) -> Iterator[xr.Dataset]:
    """Read a forecast store back one lead at a time (for writers downstream)."""
    ds = open_store(store)
    for i in range(ds.sizes[STEP]):
        yield ds.isel({STEP: i}).load()
