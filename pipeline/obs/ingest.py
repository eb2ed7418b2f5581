"""One cycle's observation ingest: decode files -> observation table -> QC -> report -> gridded channels.

This is what ``fuxiops obs ingest`` runs; the cycle flow calls the same
pieces. Outputs in the cycle's folder: ``observations.parquet``,
``qc_report.json`` + ``qc_report.md`` and (optionally) ``gridded.nc``.
Raw input files are only ever read.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import xarray as xr

from fuxiops.config import FuxiopsConfig
from fuxiops.errors import DataError
from fuxiops.logs import get_logger
from fuxiops.pipeline.obs import decode as dec
from fuxiops.pipeline.obs.qc import run_qc
from fuxiops.pipeline.obs.report import build_report, write_report
from fuxiops.pipeline.obs.schema import concat_tables

log = get_logger("fuxiops.obs.ingest")


@dataclass
class IngestResult:
    table: pa.Table
    report: dict[str, Any]
    gridded: xr.Dataset | None
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def all_failed(self) -> bool:
        t = self.report["totals"]
        return t["files"] > 0 and t["files_failed"] == t["files"]


def open_background(path: str | os.PathLike[str]) -> xr.Dataset:
    """A background state from Zarr or NetCDF (state conventions)."""
    p = str(path)
    if not (Path(p).exists() or "://" in p):
        raise DataError(f"background {p} does not exist")
    try:
        if p.rstrip("/").endswith(".zarr") or Path(p, "zarr.json").exists() or Path(p, ".zgroup").exists():
            return xr.open_zarr(p)
        return xr.open_dataset(p)
    except Exception as e:
        raise DataError(f"cannot open background {p}: {type(e).__name__}: {e}") from None


def ingest(files: Sequence[str | os.PathLike[str]], *, cycle_time: datetime | str, config: FuxiopsConfig,
           out_dir: str | os.PathLike[str] | None = None, background: xr.Dataset | None = None,
           reader: str | None = None, mode: dec.Mode = "auto", grid_output: bool = True,
           progress: Callable[[int, int], None] | None = None) -> IngestResult:
    """Run the whole ingest for one cycle; bad files/messages are quarantined, never fatal."""
    t_all = time.perf_counter()
    cycle = pd.Timestamp(cycle_time)
    inputs, unplanned = dec.plan_inputs(files, reader)
    t0 = time.perf_counter()
    results = dec.decode_files(inputs, mode=mode, n_workers=config.dask.n_workers,
                               address=config.dask.scheduler_address, progress=progress) if inputs else {}
    t_decode = time.perf_counter() - t0
    table = concat_tables(r.table for r in results.values())
    quarantined = [q.to_dict() for q in unplanned] + [q.to_dict() for r in results.values() for q in r.quarantined]
    skipped: dict[str, int] = {}
    notes: list[str] = []
    input_info = [{"source_file": q.source_file, "reader": q.reader, "messages": 0, "subsets": 0, "rows": 0,
                   "quarantined": 1, "failed": True} for q in unplanned]
    for path, r in results.items():
        for k, v in r.skipped.items():
            skipped[f"{Path(path).name}: {k}"] = v
        notes += r.notes
        input_info.append({"source_file": path, "reader": r.reader, "messages": r.n_messages, "subsets": r.n_subsets,
                           "rows": r.table.num_rows, "quarantined": len(r.quarantined),
                           "failed": r.table.num_rows == 0 and bool(r.quarantined)})
    t0 = time.perf_counter()
    table, qc_info = run_qc(table, cycle_time=cycle.to_datetime64(), config=config, background=background)
    t_qc = time.perf_counter() - t0
    t0 = time.perf_counter()
    gridded = None
    if grid_output:
        from fuxiops.pipeline.obs.gridding import grid_observations

        gridded = grid_observations(table, cycle_time=cycle.to_datetime64(), config=config)
    t_grid = time.perf_counter() - t0
    timings = {"decode": round(t_decode, 3), "qc": round(t_qc, 3), "gridding": round(t_grid, 3)}
    rep = build_report(table, qc_info, cycle=cycle.strftime("%Y-%m-%dT%H:%MZ"), inputs=input_info,
                       quarantined=quarantined, skipped=skipped, notes=notes, timings=timings)
    outputs: dict[str, str] = {}
    if out_dir is not None:
        outputs = write_outputs(Path(out_dir), table, rep, gridded)
    rep["timings_s"]["total"] = round(time.perf_counter() - t_all, 3)
    if out_dir is not None:
        write_report(rep, out_dir)
    return IngestResult(table, rep, gridded, outputs)


def write_outputs(out: Path, table: pa.Table, rep: dict[str, Any], gridded: xr.Dataset | None) -> dict[str, str]:
    """Write the cycle's products next to each other (each file written aside, then renamed)."""
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    tmp = out / ".observations.parquet.tmp"
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(out / "observations.parquet")
    paths["observations"] = str(out / "observations.parquet")
    j, m = write_report(rep, out)
    paths["qc_report"] = str(j)
    paths["qc_report_md"] = str(m)
    if gridded is not None:
        tmpn = out / ".gridded.nc.tmp"
        gridded.to_netcdf(tmpn, engine="netcdf4")
        tmpn.replace(out / "gridded.nc")
        paths["gridded"] = str(out / "gridded.nc")
    return paths


def read_observations(path: str | os.PathLike[str]) -> pa.Table:
    """Read an observation table written by :func:`ingest`."""
    from fuxiops.pipeline.obs.schema import check_table

    t = pq.read_table(path)
    check_table(t, str(path))
    return t


def used_mask(table: pa.Table) -> np.ndarray:
    from fuxiops.pipeline.obs.flags import is_rejected

    return ~is_rejected(table.column("qc_flags").to_numpy(zero_copy_only=False))
