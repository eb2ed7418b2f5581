"""The QC chain, in the order operational centres run it; each step flags rows, none removes them.

1. coordinates -- latitude/longitude/time present and valid
2. window      -- [T+a, T+b) per report type (``observations.window_hours``)
3. domain      -- inside the (optional regional) domain and the model's vertical range
4. bounds      -- physical bounds (catalog valid_min/max; brightness temperature 50-350 K)
5. duplicates  -- same report type, station, time, position, level and variable
6. blacklist   -- station/platform ids (shell patterns)
7. background  -- |O-B| > k * sigma_o against the cycle background (when given);
                  rows with no model equivalent are skipped, counted with the reason
8. biweight    -- bi-weight z-score of O-B (of O without background) per latitude band
                  (|lat| < 30, 30-60, 60-90), threshold 6 for radiances and 4 otherwise
9. thinning    -- one super-ob per grid cell, hour, level/channel and variable

Each step sees only rows no earlier step rejected, and reports how many rows
it flagged, per report type.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import xarray as xr

from fuxiops.config import FuxiopsConfig, ObservationsConfig
from fuxiops.grids import Grid, get_grid
from fuxiops.logs import get_logger
from fuxiops.pipeline.obs.flags import REJECT_MASK, QCFlag
from fuxiops.pipeline.obs.schema import SCHEMA, check_table, variable_bounds

log = get_logger("fuxiops.obs.qc")

LAT_BANDS = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.0001))
#: Bi-weight tuning constant (Lanczos / Lanzante 1996): points beyond c * MAD get zero weight.
BIWEIGHT_C = 7.5
RADIANCE_TYPES = ("radiance",)
#: Report types that are profiles for windows: radiosondes use the TEMP window.
WINDOW_ALIASES = {"gnss_ground": "gnss", "gnssro": "gnssro"}


@dataclass
class QCContext:
    """What the steps need besides the table."""

    cycle_time: np.datetime64
    obs: ObservationsConfig
    grid: Grid
    levels_hpa: tuple[int, ...]
    background: xr.Dataset | None = None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Rows the background check skipped: (report type, instrument, variable, rows, reason) records.
    not_checked: list[dict[str, Any]] = field(default_factory=list)


def _cycle64(t: datetime | np.datetime64 | str) -> np.datetime64:
    """The cycle time as naive UTC datetime64[ns] (aware inputs are converted to UTC)."""
    ts = pd.Timestamp(t)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return np.datetime64(ts.to_datetime64(), "ns")


def window_for(report_type: str, windows: dict[str, tuple[float, float]]) -> tuple[float, float]:
    """The [a, b) window in hours of a report type: its own entry, an alias, or ``default``."""
    if report_type in windows:
        return windows[report_type]
    alias = WINDOW_ALIASES.get(report_type)
    if alias and alias in windows:
        return windows[alias]
    return windows.get("default", (-3.0, 5.0))


def factor(df: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and labels of a label column (hash-based; never sorts Python strings)."""
    s = df[col]
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s.cat.codes.to_numpy(np.int64), s.cat.categories.to_numpy(object)
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def label_mask(df: pd.DataFrame, col: str, value: str) -> np.ndarray:
    codes, labels = factor(df, col)
    hit = np.flatnonzero(labels == value)
    return codes == hit[0] if hit.size else np.zeros(len(df), bool)


# -- steps -------------------------------------------------------------------

def step_coordinates(df: pd.DataFrame, active: np.ndarray, ctx: QCContext) -> np.ndarray:
    lat, lon = df["latitude"].to_numpy(), df["longitude"].to_numpy()
    bad = ~(np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90.0) & (lon >= -180.0) & (lon <= 360.0))
    bad |= df["time"].isna().to_numpy()
    return bad


def step_window(df: pd.DataFrame, active: np.ndarray, ctx: QCContext) -> np.ndarray:
    hours = (df["time"].to_numpy("datetime64[ns]") - ctx.cycle_time) / np.timedelta64(1, "h")
    bad = np.zeros(len(df), bool)
    codes, labels = factor(df, "report_type")
    for k, t in enumerate(labels):
        a, b = window_for(str(t), dict(ctx.obs.window_hours))
        m = codes == k
        bad[m] = ~((hours[m] >= a) & (hours[m] < b))
    return bad


def step_domain(df: pd.DataFrame, active: np.ndarray, ctx: QCContext) -> np.ndarray:
    bad = np.zeros(len(df), bool)
    vert = df["vertical"].to_numpy(np.float64)
    # Pressure observations must lie within the model's levels (the top level up to 1100 hPa).
    ptop = min(ctx.levels_hpa) * 100.0 if ctx.levels_hpa else 0.0
    m = label_mask(df, "vertical_kind", "pressure")
    bad[m] = ~((vert[m] >= ptop) & (vert[m] <= 110000.0))
    m = label_mask(df, "vertical_kind", "height") & label_mask(df, "report_type", "gnssro")
    bad[m] = ~((vert[m] >= 0.0) & (vert[m] <= 60000.0))
    m = label_mask(df, "vertical_kind", "channel")
    bad[m] = ~(np.isfinite(vert[m]) & (vert[m] >= 0))
    if ctx.obs.qc.domain is not None:
        la0, la1, lo0, lo1 = ctx.obs.qc.domain
        lat, lon = df["latitude"].to_numpy(), np.mod(df["longitude"].to_numpy(), 360.0)
        lo0, lo1 = lo0 % 360.0, lo1 % 360.0
        inlon = (lon >= lo0) & (lon <= lo1) if lo0 <= lo1 else (lon >= lo0) | (lon <= lo1)
        bad |= ~((lat >= la0) & (lat <= la1) & inlon)
    return bad


def step_bounds(df: pd.DataFrame, active: np.ndarray, ctx: QCContext) -> np.ndarray:
    bad = np.zeros(len(df), bool)
    codes, labels = factor(df, "variable")
    val = df["value"].to_numpy(np.float64)
    for k, v in enumerate(labels):
        lo, hi = variable_bounds(str(v))
        m = codes == k
        bad[m] = ~((val[m] >= lo) & (val[m] <= hi))
    err = df["obs_error"].to_numpy(np.float64)
    bad |= ~(np.isfinite(err) & (err > 0))
    return bad


_DUP_KEYS = ["report_type", "station_id", "time", "_lat", "_lon", "_vert", "vertical_kind", "variable"]


def step_duplicates(df: pd.DataFrame, active: np.ndarray, ctx: QCContext) -> np.ndarray:
    sub = df.loc[active, ["report_type", "station_id", "time", "vertical_kind", "variable"]].copy()
    # Positions compared at ~10 m, levels at 1 Pa / 1 m: re-sent bulletins repeat the same values.
    sub["_lat"] = np.round(df.loc[active, "latitude"].to_numpy() * 1e4)
    sub["_lon"] = np.round(np.mod(df.loc[active, "longitude"].to_numpy(), 360.0) * 1e4)
    sub["_vert"] = np.round(df.loc[active, "vertical"].to_numpy())
    dup = sub.duplicated(subset=_DUP_KEYS, keep="first").to_numpy()
    bad = np.zeros(len(df), bool)
    bad[np.flatnonzero(active)[dup]] = True
    return bad


def step_blacklist(df: pd.DataFrame, active: np.ndarray, ctx: QCContext) -> np.ndarray:
    patterns = list(ctx.obs.qc.blacklist)
    if not patterns:
        return np.zeros(len(df), bool)
    codes, labels = factor(df, "station_id")
    hit = [k for k, s in enumerate(labels) if any(fnmatch.fnmatchcase(str(s), p) for p in patterns)]
    return np.isin(codes, hit)


def step_background(df: pd.DataFrame, active: np.ndarray, ctx: QCContext) -> np.ndarray:
    bad = np.zeros(len(df), bool)
    if ctx.background is None:
        return bad
    from fuxiops.pipeline.obs.background import explain_missing, model_equivalents, select_time

    bg = select_time(ctx.background, ctx.cycle_time)
    b = np.full(len(df), np.nan)
    b[active] = model_equivalents(df.loc[active], bg)
    df["background"] = b
    # Rows the check had to skip (no model equivalent), with the reason, for the QC report.
    ctx.not_checked = explain_missing(df.loc[active], bg, b[active])
    omb = df["value"].to_numpy(np.float64) - b
    sigma = df["obs_error"].to_numpy(np.float64)
    has = np.isfinite(b)
    bad[has] = np.abs(omb[has]) > ctx.obs.qc.background_k * sigma[has]
    return bad


def vertical_bin(df: pd.DataFrame, levels_hpa: tuple[int, ...]) -> np.ndarray:
    """A group label for the vertical coordinate: nearest model level, 1 km layer, channel, or surface."""
    vert = df["vertical"].to_numpy(np.float64)
    out = np.zeros(len(df), dtype=np.float64)
    m = label_mask(df, "vertical_kind", "pressure")
    if m.any() and levels_hpa:
        lv = np.asarray(levels_hpa, dtype=np.float64) * 100.0
        idx = np.argmin(np.abs(np.log(np.maximum(vert[m], 1.0))[:, None] - np.log(lv)[None, :]), axis=1)
        out[m] = lv[idx]
    m = label_mask(df, "vertical_kind", "height")
    out[m] = np.floor(vert[m] / 1000.0) * 1000.0
    m = label_mask(df, "vertical_kind", "channel")
    out[m] = vert[m]
    return np.nan_to_num(out, nan=-1.0)


def biweight_z(x: np.ndarray, c: float = BIWEIGHT_C) -> np.ndarray:
    """Robust z-scores (x - biweight mean) / biweight std; zeros if the spread is nil."""
    med = np.median(x)
    mad = np.median(np.abs(x - med))
    if mad <= 0:
        return np.zeros_like(x)
    u = (x - med) / (c * mad)
    w = np.abs(u) < 1.0
    one = 1.0 - u[w] ** 2
    mean = med + np.sum((x[w] - med) * one ** 2) / np.sum(one ** 2)
    u = (x - mean) / (c * mad)
    w = np.abs(u) < 1.0
    one = 1.0 - u[w] ** 2
    den = np.abs(np.sum(one * (1.0 - 5.0 * u[w] ** 2)))
    std = np.sqrt(len(x) * np.sum((x[w] - mean) ** 2 * one ** 4)) / den if den > 0 else 0.0
    if not np.isfinite(std) or std <= 0:
        return np.zeros_like(x)
    return (x - mean) / std


def step_biweight(df: pd.DataFrame, active: np.ndarray, ctx: QCContext) -> np.ndarray:
    bad = np.zeros(len(df), bool)
    val = df["value"].to_numpy(np.float64)
    b = df["background"].to_numpy(np.float64)
    # Screen departures where a background exists (the paper's O-B screen), raw values otherwise.
    x = np.where(np.isfinite(b), val - b, val)
    alat = np.abs(df["latitude"].to_numpy(np.float64))
    band = np.digitize(alat, [30.0, 60.0])
    rt_codes, rt_labels = factor(df, "report_type")
    keys = pd.DataFrame({"rt": rt_codes, "ins": factor(df, "instrument")[0], "var": factor(df, "variable")[0],
                         "vb": vertical_bin(df, ctx.levels_hpa), "band": band, "hasb": np.isfinite(b)})
    keys = keys[active & np.isfinite(x)]
    for (rt, _ins, _var, _vb, _band, _hb), idx in keys.groupby(list(keys.columns), sort=False).indices.items():
        rows = keys.index.to_numpy()[idx]
        if len(rows) < ctx.obs.qc.biweight_min_count:
            continue
        radiance = rt_labels[rt] in RADIANCE_TYPES
        thr = ctx.obs.qc.biweight_threshold_radiance if radiance else ctx.obs.qc.biweight_threshold_other
        z = biweight_z(x[rows])
        bad[rows[np.abs(z) > thr]] = True
    return bad


def step_thinning(df: pd.DataFrame, active: np.ndarray, ctx: QCContext) -> np.ndarray:
    """Super-ob per (report type, instrument, variable, level/channel, grid cell, hour); flags the others."""
    bad = np.zeros(len(df), bool)
    if not ctx.obs.qc.thinning or not active.any():
        return bad
    rows = np.flatnonzero(active)
    lat = df["latitude"].to_numpy(np.float64)[rows]
    lon = df["longitude"].to_numpy(np.float64)[rows]
    i, j = ctx.grid.nearest_index(lat, lon)
    hour = np.floor((df["time"].to_numpy("datetime64[ns]")[rows] - ctx.cycle_time) / np.timedelta64(1, "h"))
    key = pd.DataFrame({"rt": factor(df, "report_type")[0][rows], "ins": factor(df, "instrument")[0][rows],
                        "var": factor(df, "variable")[0][rows],
                        "vb": vertical_bin(df.iloc[rows], ctx.levels_hpa), "i": i, "j": j, "h": hour})
    gid = key.groupby(list(key.columns), sort=False).ngroup().to_numpy()
    # Representative: the member nearest the cell centre (then the earliest row).
    dlat = lat - ctx.grid.latitudes[i]
    dlon = (np.mod(lon, 360.0) - ctx.grid.longitudes[j] + 180.0) % 360.0 - 180.0
    dist = dlat ** 2 + (dlon * np.cos(np.deg2rad(lat))) ** 2
    order = np.lexsort((np.arange(len(rows)), dist, gid))
    first = np.ones(len(rows), bool)
    first[1:] = gid[order][1:] != gid[order][:-1]
    reps = order[first]
    values = df["value"].to_numpy(np.float64)[rows]
    n = np.bincount(gid)
    mean = np.bincount(gid, weights=values) / n
    sv = df["superob_value"].to_numpy(np.float64).copy()
    sc = df["superob_count"].to_numpy(np.int32).copy()
    sv[rows[reps]] = mean[gid[reps]]
    sc[rows[reps]] = n[gid[reps]]
    df["superob_value"] = sv
    df["superob_count"] = sc
    is_rep = np.zeros(len(rows), bool)
    is_rep[reps] = True
    bad[rows[~is_rep]] = True
    multi = rows[reps][n[gid[reps]] > 1]
    ctx._superob_rows = multi  # type: ignore[attr-defined]
    return bad


STEPS: dict[str, tuple[Callable[[pd.DataFrame, np.ndarray, QCContext], np.ndarray], QCFlag]] = {
    "coordinates": (step_coordinates, QCFlag.MISSING_COORDINATE),
    "window": (step_window, QCFlag.OUT_OF_WINDOW),
    "domain": (step_domain, QCFlag.DOMAIN),
    "bounds": (step_bounds, QCFlag.PHYSICAL_BOUNDS),
    "duplicates": (step_duplicates, QCFlag.DUPLICATE),
    "blacklist": (step_blacklist, QCFlag.BLACKLIST),
    "background": (step_background, QCFlag.BACKGROUND),
    "biweight": (step_biweight, QCFlag.BIWEIGHT),
    "thinning": (step_thinning, QCFlag.THINNED),
}
ORDER = list(STEPS)


def _obs_config(config: FuxiopsConfig | ObservationsConfig | None) -> tuple[ObservationsConfig, Grid, tuple[int, ...]]:
    if config is None:
        from fuxiops.config import load_config

        config = load_config()
    if isinstance(config, ObservationsConfig):
        from fuxiops.catalog import TESTBED
        from fuxiops.grids import TESTBED_GRID

        return config, get_grid(TESTBED_GRID), TESTBED.levels
    return config.observations, config.grid_spec, config.variable_set.levels


def run_qc(table: pa.Table, *, cycle_time: datetime | np.datetime64 | str,
           config: FuxiopsConfig | ObservationsConfig | None = None, background: xr.Dataset | None = None,
           grid: Grid | None = None) -> tuple[pa.Table, dict[str, Any]]:
    """Run the configured QC steps; returns the flagged table and per-step counts.

    Rows are never removed: a rejected row keeps its value with the reason
    bits set. Steps run in operational order whatever order the
    configuration lists them in.
    """
    check_table(table)
    obs, cfg_grid, levels = _obs_config(config)
    ctx = QCContext(_cycle64(cycle_time), obs, grid or cfg_grid, tuple(levels), background)
    # Label columns as categoricals: grouping and masks then work on integer codes.
    df = table.to_pandas(strings_to_categorical=True)
    df["time"] = pd.to_datetime(df["time"])
    flags = df["qc_flags"].to_numpy(np.uint32).copy()
    steps: dict[str, Any] = {}
    rt_codes, rt_labels = factor(df, "report_type")
    enabled = [s for s in ORDER if s in set(obs.qc.steps)]
    for name in enabled:
        fn, bit = STEPS[name]
        active = (flags & np.uint32(REJECT_MASK)) == 0
        bad = fn(df, active, ctx) & active
        flags[bad] |= np.uint32(int(bit))
        cnt = np.bincount(rt_codes[bad], minlength=len(rt_labels))
        by_type = {str(rt_labels[k]): int(n) for k, n in enumerate(cnt) if n}
        steps[name] = {"checked": int(active.sum()), "flagged": int(bad.sum()), "by_report_type": by_type}
        if name == "background" and ctx.background is not None:
            steps[name]["not_checked"] = list(ctx.not_checked)
        log.debug("qc step %s: %d of %d rows flagged", name, int(bad.sum()), int(active.sum()))
    if "background" in enabled:
        no_b = ~np.isfinite(df["background"].to_numpy(np.float64)) & (ctx.background is not None)
        flags[no_b] |= np.uint32(int(QCFlag.NO_BACKGROUND))
    sup = getattr(ctx, "_superob_rows", None)
    if sup is not None and len(sup):
        flags[sup] |= np.uint32(int(QCFlag.SUPEROB))
    # Only the QC columns change: set them on the original table (no round trip of the labels).
    out = table
    for name, values in (("qc_flags", flags), ("background", df["background"].to_numpy(np.float64)),
                         ("superob_value", df["superob_value"].to_numpy(np.float64)),
                         ("superob_count", df["superob_count"].to_numpy(np.int32))):
        i = out.schema.get_field_index(name)
        out = out.set_column(i, SCHEMA.field(name), pa.array(values, SCHEMA.field(name).type))
    return out, {"steps": steps, "order": enabled, "cycle_time": str(ctx.cycle_time),
                 "background": background is not None}
