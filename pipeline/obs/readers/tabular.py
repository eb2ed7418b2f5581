"""Station files in CSV or Parquet (national networks, partner feeds, re-ingested tables).

Two layouts are accepted:

* **long**: one row per value with at least ``station_id, time, latitude,
  longitude, variable, value`` (optional ``report_type``, ``vertical``,
  ``vertical_kind``, ``obs_error``) -- the observation table's own layout;
* **wide**: one row per report with ``station_id, time, latitude, longitude``
  and one column per variable (``t2m``, ``msl``, ``u10`` ...); wind may be
  given as ``wind_speed`` + ``wind_direction`` (converted to u10/v10).

Units must be SI (K, Pa, m s-1). Rows whose coordinates are missing stay in
the table (QC flags them); unknown columns are ignored and named in a warning.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from fuxiops.pipeline.obs.obs_errors import obs_error
from fuxiops.pipeline.obs.readers.base import Quarantine, Reader, ReadResult, wind_to_uv
from fuxiops.pipeline.obs.schema import OBS_VARIABLES, RowBuilder, concat_tables
from fuxiops.catalog import VARIABLES

REQUIRED = ("station_id", "time", "latitude", "longitude")
KNOWN_VARS = set(VARIABLES) | set(OBS_VARIABLES)


class TabularReader(Reader):
    """CSV/Parquet station files -> observation rows."""

    name = "csv"

    def __init__(self, report_type: str = "synop", **options: object) -> None:
        self.report_type = report_type
        self.options = options

    def _load(self, path: str) -> pd.DataFrame:
        if path.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        return pd.read_csv(path, comment="#")

    def read(self, path: str | os.PathLike[str]) -> ReadResult:
        path = str(path)
        q = lambda reason: ReadResult(quarantined=[Quarantine(path, None, reason, self.name)],  # noqa: E731
                                      source_file=path, reader=self.name)
        try:
            if Path(path).stat().st_size == 0:
                return q("empty file")
            df = self._load(path)
        except Exception as e:
            return q(f"cannot parse {Path(path).suffix or 'file'}: {type(e).__name__}: {e}")
        missing = [c for c in REQUIRED if c not in df.columns]
        if missing:
            return q(f"missing coordinate columns {missing}; need {list(REQUIRED)}")
        if df.empty:
            return q("no rows")
        time = pd.to_datetime(df["time"], utc=True, errors="coerce").dt.tz_localize(None).to_numpy("datetime64[ns]")
        lat = pd.to_numeric(df["latitude"], errors="coerce").to_numpy(np.float64)
        lon = pd.to_numeric(df["longitude"], errors="coerce").to_numpy(np.float64)
        sid = df["station_id"].astype(str).to_numpy(object)
        rtypes = df["report_type"].astype(str).to_numpy(object) if "report_type" in df else \
            np.full(len(df), self.report_type, dtype=object)
        idx = np.arange(len(df))
        builders: dict[str, RowBuilder] = {}

        def add(mask: np.ndarray, var: str, values: np.ndarray, vertical: np.ndarray, kind: str | np.ndarray,
                err: np.ndarray | None = None) -> None:
            for rt in np.unique(rtypes[mask]):
                m = mask & (rtypes == rt)
                b = builders.setdefault(rt, RowBuilder(rt, path))
                kinds = kind[m] if isinstance(kind, np.ndarray) else np.full(m.sum(), kind, dtype=object)
                for k in np.unique(kinds):
                    mk = m.copy()
                    mk[m] = kinds == k
                    e = err[mk] if err is not None else obs_error(rt, var)
                    b.add(station_id=sid[mk], time=time[mk], latitude=lat[mk], longitude=lon[mk],
                          vertical=vertical[mk], vertical_kind=str(k), variable=var, value=values[mk],
                          obs_error=e, message_index=0, subset_index=idx[mk])

        nanv = np.full(len(df), np.nan)
        if "variable" in df.columns and "value" in df.columns:
            vals = pd.to_numeric(df["value"], errors="coerce").to_numpy(np.float64)
            vert = pd.to_numeric(df["vertical"], errors="coerce").to_numpy(np.float64) if "vertical" in df else nanv
            kinds = df["vertical_kind"].astype(str).to_numpy(object) if "vertical_kind" in df else \
                np.full(len(df), "surface", dtype=object)
            errs = pd.to_numeric(df["obs_error"], errors="coerce").to_numpy(np.float64) if "obs_error" in df else None
            var = df["variable"].astype(str).to_numpy(object)
            for v in np.unique(var):
                m = (var == v) & np.isfinite(vals)
                e = None
                if errs is not None:
                    e = np.where(np.isfinite(errs), errs, obs_error(self.report_type, v))
                add(m, v, vals, vert, kinds, e)
        else:
            vert = pd.to_numeric(df["height"], errors="coerce").to_numpy(np.float64) if "height" in df else nanv
            cols = [c for c in df.columns if c in KNOWN_VARS
                    and not (c == "wind_speed" and "wind_direction" in df)]
            for c in cols:
                vals = pd.to_numeric(df[c], errors="coerce").to_numpy(np.float64)
                add(np.isfinite(vals), c, vals, vert, "surface")
            if "wind_speed" in df and "wind_direction" in df and "u10" not in df:
                ws = pd.to_numeric(df["wind_speed"], errors="coerce").to_numpy(np.float64)
                wd = pd.to_numeric(df["wind_direction"], errors="coerce").to_numpy(np.float64)
                u, v = wind_to_uv(wd, ws)
                add(np.isfinite(u), "u10", u, vert, "surface")
                add(np.isfinite(v), "v10", v, vert, "surface")
        table = concat_tables(b.table() for b in builders.values())
        if table.num_rows == 0:
            return q("no known variable columns with values (expected e.g. "
                     f"{', '.join(sorted(KNOWN_VARS)[:8])} ... or long format variable/value)")
        return ReadResult(table, [], 1, len(df), path, self.name)


class ParquetReader(TabularReader):
    """Parquet station files (same layouts as CSV)."""

    name = "parquet"
