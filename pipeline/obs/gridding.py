"""Gridded observation channels: the assimilator's per-group inputs (DESIGN.md section 4).

For each observation group (configuration ``observations.gridding.groups``;
one encoder of the assimilator per group) used rows are mapped to the
nearest model grid cell in hourly bins, normalised per channel, zero-filled
with an availability mask; profile groups carry sin/cos time-phase channels
and sparse in-situ groups may be spread with a Cressman kernel
((R^2-d^2)/(R^2+d^2)) plus a confidence channel.

The result is an xarray Dataset with, per group ``g``, a float32 variable
``g`` of dims (``g_channel``, latitude, longitude); ``g_channel`` names every
channel and the variable's ``normalisation`` attribute (JSON) gives the mean
and std of each value channel so that values can be turned back to SI units.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import xarray as xr

from fuxiops.catalog import VariableSet
from fuxiops.config import FuxiopsConfig, GriddingConfig, ObsGroupConfig
from fuxiops.errors import ConfigError
from fuxiops.grids import Grid
from fuxiops.pipeline.obs.flags import is_rejected

EARTH_RADIUS_KM = 6371.0
#: The hour bins of the ``hourly`` mode span the widest default window [T-3h, T+5h).
HOURLY_BINS = tuple(range(-3, 5))
#: Period of the time-phase channels (hours): the offset of a report within the day.
PHASE_PERIOD_H = 24.0


def _gcfg(config: FuxiopsConfig | GriddingConfig | None) -> GriddingConfig:
    if config is None:
        return GriddingConfig()
    if isinstance(config, GriddingConfig):
        return config
    return config.observations.gridding


def _vertical_labels(group: ObsGroupConfig, variables: VariableSet) -> list[tuple[str, float | None]]:
    """(suffix, coordinate) of each vertical bin of a group."""
    if group.vertical == "surface":
        return [("", None)]
    if group.vertical == "pressure":
        return [(str(lev), float(lev) * 100.0) for lev in variables.levels]
    if group.vertical == "height":
        if not group.heights_m:
            raise ConfigError("a gridding group with vertical 'height' needs heights_m")
        return [(f"_{int(h)}m", float(h)) for h in group.heights_m]
    if not group.channels:
        raise ConfigError("a gridding group with vertical 'channel' needs channels")
    return [(f"_ch{c}", float(c)) for c in group.channels]


def value_channels(group: ObsGroupConfig, variables: VariableSet) -> list[tuple[str, str, float | None]]:
    """(channel name, variable, vertical coordinate) of a group's value channels."""
    return [(f"{v}{suffix}", v, coord) for v in group.variables for suffix, coord in _vertical_labels(group, variables)]


def _bins(cfg: GriddingConfig) -> list[str]:
    return [""] if cfg.time_bins == "latest" else [f"@h{h:+d}" for h in HOURLY_BINS]


def gridded_channels(variables: VariableSet, grid: Grid | None = None,
                     config: FuxiopsConfig | GriddingConfig | None = None) -> dict[str, list[str]]:
    """Channel names per group, in the order of the gridded arrays (values, masks, phase, confidence).

    The assimilator builds one encoder per group with ``len(names)`` input
    channels; the grid does not change the channel list (it is accepted so
    that callers state what they build for).
    """
    cfg = _gcfg(config)
    out: dict[str, list[str]] = {}
    for g, group in cfg.groups.items():
        vals = [name for name, _, _ in value_channels(group, variables)]
        names: list[str] = []
        for b in _bins(cfg):
            names += [f"{n}{b}" for n in vals]
            names += [f"{n}{b}_mask" for n in vals]
            if group.time_phase:
                names += [f"time_sin{b}", f"time_cos{b}"]
            if group.cressman and cfg.cressman_radius_km > 0:
                names += [f"{n}{b}_confidence" for n in vals]
        out[g] = names
    return out


def group_channels(config: FuxiopsConfig) -> dict[str, int]:
    """Number of input channels per group for a deployment (what the assimilator needs)."""
    return {g: len(n) for g, n in gridded_channels(config.variable_set, config.grid_spec, config).items()}


@lru_cache(maxsize=8)
def _grid_tree(grid: Grid) -> tuple[Any, np.ndarray]:
    """Unit vectors of the grid cells and their KD-tree (built once per grid)."""
    from scipy.spatial import cKDTree

    la, lo = np.meshgrid(np.deg2rad(grid.latitudes), np.deg2rad(grid.longitudes), indexing="ij")
    xyz = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1).reshape(-1, 3)
    return cKDTree(xyz), xyz


def _cressman(grid: Grid, ii: np.ndarray, jj: np.ndarray, values: np.ndarray, radius_km: float
              ) -> tuple[np.ndarray, np.ndarray]:
    """Spread cell values with weights (R^2-d^2)/(R^2+d^2); returns (field, confidence=max weight)."""
    from scipy.spatial import cKDTree

    tree, xyz = _grid_tree(grid)
    src = xyz.reshape(grid.n_lat, grid.n_lon, 3)[ii, jj]
    chord = 2.0 * np.sin(radius_km / EARTH_RADIUS_KM / 2.0)
    # All (observation cell, grid cell) pairs closer than R, as chord lengths.
    pairs = cKDTree(src).sparse_distance_matrix(tree, chord, output_type="ndarray")
    p, c = pairs["i"].astype(np.int64), pairs["j"].astype(np.int64)
    d = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.clip(pairs["v"] / 2.0, 0.0, 1.0))
    # A pair at distance 0 is not stored by sparse_distance_matrix: add every cell to itself.
    p = np.concatenate([p, np.arange(len(src))])
    c = np.concatenate([c, ii * grid.n_lon + jj])
    d = np.concatenate([d, np.zeros(len(src))])
    keep = np.ones(len(p), bool)
    keep[: len(pairs)] = d[: len(pairs)] > 0
    p, c, d = p[keep], c[keep], d[keep]
    r2 = radius_km ** 2
    w = (r2 - d ** 2) / (r2 + d ** 2)
    n = xyz.shape[0]
    num = np.bincount(c, weights=w * values[p], minlength=n)
    den = np.bincount(c, weights=w, minlength=n)
    conf = np.zeros(n)
    np.maximum.at(conf, c, w)
    field = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return field.reshape(grid.shape), conf.reshape(grid.shape)


def _used_frame(table: pa.Table) -> pd.DataFrame:
    cols = ["report_type", "instrument", "time", "latitude", "longitude", "vertical", "vertical_kind", "variable",
            "value", "superob_value", "qc_flags"]
    df = table.select(cols).to_pandas()
    df = df[~is_rejected(df["qc_flags"].to_numpy())]
    df = df[np.isfinite(df["latitude"]) & np.isfinite(df["longitude"])]
    v = df["superob_value"].to_numpy(np.float64)
    df = df.assign(obs=np.where(np.isfinite(v), v, df["value"].to_numpy(np.float64)))
    return df


def grid_observations(table: pa.Table, *, cycle_time: datetime | np.datetime64 | str,
                      config: FuxiopsConfig | None = None, variables: VariableSet | None = None,
                      grid: Grid | None = None, gridding: GriddingConfig | None = None,
                      stats: Mapping[str, Mapping[str, tuple[float, float]]] | None = None) -> xr.Dataset:
    """Grid the used rows of a QC'd observation table into per-group channel stacks.

    ``stats`` (group -> channel -> (mean, std)) fixes the normalisation (e.g.
    the assimilator's training statistics); without it each channel is
    normalised by this cycle's own mean and std.
    """
    if config is None and (variables is None or grid is None):
        from fuxiops.config import load_config

        config = load_config()
    variables = variables or config.variable_set  # type: ignore[union-attr]
    grid = grid or config.grid_spec  # type: ignore[union-attr]
    cfg = gridding or _gcfg(config)
    t0 = np.datetime64(pd.Timestamp(cycle_time).tz_localize(None) if pd.Timestamp(cycle_time).tzinfo
                       else pd.Timestamp(cycle_time), "ns")
    df = _used_frame(table)
    hours = (df["time"].to_numpy("datetime64[ns]") - t0) / np.timedelta64(1, "h")
    df = df.assign(hours=hours, hbin=np.floor(hours))
    names_all = gridded_channels(variables, grid, cfg)
    data_vars: dict[str, xr.DataArray] = {}
    for g, group in cfg.groups.items():
        vch = value_channels(group, variables)
        sub = df[df["report_type"].isin(group.report_types) & df["variable"].isin(group.variables)]
        if group.instruments:
            sub = sub[sub["instrument"].isin(group.instruments)]
        # Vertical bin of each row -> value-channel index.
        chan = np.full(len(sub), -1, dtype=np.int64)
        var = sub["variable"].to_numpy(object)
        vert = sub["vertical"].to_numpy(np.float64)
        labels = _vertical_labels(group, variables)
        nv = len(labels)
        for vi, v in enumerate(group.variables):
            m = var == v
            if not m.any():
                continue
            if group.vertical == "surface":
                chan[m] = vi * nv
            elif group.vertical == "channel":
                coords = np.array([c for _, c in labels])
                hit = vert[m][:, None] == coords[None, :]
                k = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
                chan[m] = np.where(k >= 0, vi * nv + k, -1)
            else:
                coords = np.array([c for _, c in labels])
                if group.vertical == "pressure":
                    dist = np.abs(np.log(np.maximum(vert[m], 1.0))[:, None] - np.log(coords)[None, :])
                else:
                    dist = np.abs(vert[m][:, None] - coords[None, :])
                chan[m] = vi * nv + np.argmin(dist, axis=1)
        sub = sub.assign(chan=chan)
        sub = sub[sub["chan"] >= 0]
        ii, jj = grid.nearest_index(sub["latitude"].to_numpy(), sub["longitude"].to_numpy()) if len(sub) else \
            (np.zeros(0, np.int64), np.zeros(0, np.int64))
        sub = sub.assign(i=ii, j=jj)
        bins = _bins(cfg)
        nval = len(vch)
        names = names_all[g]
        arr = np.zeros((len(names), grid.n_lat, grid.n_lon), dtype=np.float32)
        norm: dict[str, list[float]] = {}
        counts: dict[str, int] = {}
        for bi, b in enumerate(bins):
            if cfg.time_bins == "latest":
                # Per cell and channel, the hourly bin nearest the analysis time wins (later bin on ties).
                prio = np.abs(sub["hbin"].to_numpy() + 0.5) - 1e-3 * sub["hbin"].to_numpy()
                part = sub.assign(prio=prio)
                best = part.groupby(["chan", "i", "j"])["prio"].transform("min")
                part = part[part["prio"] == best]
            else:
                part = sub[sub["hbin"] == HOURLY_BINS[bi]]
            cell = part.groupby(["chan", "i", "j"]).agg(obs=("obs", "mean"), hours=("hours", "mean")).reset_index()
            base = bi * (len(names) // len(bins))
            c_arr, i_arr, j_arr = (cell[k].to_numpy(np.int64) for k in ("chan", "i", "j"))
            o = cell["obs"].to_numpy(np.float64)
            for c in range(nval):
                name = f"{vch[c][0]}{b}"
                m = c_arr == c
                counts[name] = int(m.sum())
                if stats and g in stats and vch[c][0] in stats[g]:
                    mean, std = stats[g][vch[c][0]]
                elif m.any():
                    mean, std = float(o[m].mean()), float(o[m].std())
                else:
                    mean, std = 0.0, 1.0
                std = std if std > 1e-6 else 1.0
                norm[name] = [mean, std]
                if not m.any():
                    continue
                z = (o[m] - mean) / std
                arr[base + c, i_arr[m], j_arr[m]] = z
                arr[base + nval + c, i_arr[m], j_arr[m]] = 1.0
                k = base + 2 * nval
                if group.time_phase:
                    k += 2
                if group.cressman and cfg.cressman_radius_km > 0:
                    field, conf = _cressman(grid, i_arr[m], j_arr[m], z, cfg.cressman_radius_km)
                    arr[base + c] = field
                    arr[k + c] = conf
            if group.time_phase and len(cell):
                # One phase per cell: the mean report time over the group's channels there.
                tc = cell.groupby(["i", "j"])["hours"].mean().reset_index()
                ph = 2.0 * np.pi * tc["hours"].to_numpy() / PHASE_PERIOD_H
                ti, tj = tc["i"].to_numpy(np.int64), tc["j"].to_numpy(np.int64)
                arr[base + 2 * nval, ti, tj] = np.sin(ph)
                arr[base + 2 * nval + 1, ti, tj] = np.cos(ph)
        data_vars[g] = xr.DataArray(
            arr, dims=(f"{g}_channel", "latitude", "longitude"), coords={f"{g}_channel": names},
            attrs={"normalisation": json.dumps(norm), "n_cells": json.dumps(counts),
                   "report_types": ",".join(group.report_types), "vertical": group.vertical,
                   "long_name": f"gridded observations, group {g}"})
    ds = xr.Dataset(data_vars, coords={"latitude": ("latitude", grid.latitudes, {"units": "degrees_north"}),
                                       "longitude": ("longitude", grid.longitudes, {"units": "degrees_east"})},
                    attrs={"cycle_time": str(t0), "grid": grid.name, "time_bins": cfg.time_bins,
                           "cressman_radius_km": cfg.cressman_radius_km,
                           "conventions": "values normalised per channel: (x - mean) / std; 0 where no data"})
    return ds


def normalisation(ds: xr.Dataset, group: str) -> dict[str, tuple[float, float]]:
    """The (mean, std) of each value channel of a gridded group."""
    return {k: (v[0], v[1]) for k, v in json.loads(ds[group].attrs["normalisation"]).items()}


def presence(ds: xr.Dataset) -> dict[str, bool]:
    """Whether each group has any observation (the assimilator's per-group flag)."""
    out: dict[str, Any] = {}
    for g in ds.data_vars:
        names = [str(n) for n in ds[f"{g}_channel"].values]
        masks = [i for i, n in enumerate(names) if n.endswith("_mask")]
        out[str(g)] = bool(masks and float(ds[g].values[masks].max()) > 0)
    return out
