"""Scorecards: score forecast stores against a reference and compare systems cell by cell.

A forecast store has dims (time = initialisation, step = lead in hours or a
timedelta, [level], latitude, longitude), or a scalar ``time`` for a single
run; the reference (the truth in the testbed, a reanalysis for real data) has
dims (time, [level], latitude, longitude). Scores are split per channel
(``z500``, ``t2m``) and lead, so that "system A beats B in x% of
(variable, lead) cells" is a plain count over the table.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from fuxiops import metrics
from fuxiops.errors import DataError

LOWER_IS_BETTER = {"rmse": True, "mae": True, "abs_bias": True, "acc": False}


def open_forecasts(spec: str | Path) -> xr.Dataset:
    """Open one forecast store, or several (a glob) concatenated along initialisation time."""
    paths = sorted(glob.glob(str(spec))) or [str(spec)]
    parts = []
    for p in paths:
        if not Path(p).exists():
            raise DataError(f"forecast store {p} does not exist")
        ds = xr.open_zarr(p, consolidated=None) if p.rstrip("/").endswith(".zarr") or Path(p).is_dir() \
            else xr.open_dataset(p)
        if "step" not in ds.dims:
            raise DataError(f"{p} has no 'step' dimension: not a forecast store (dims {dict(ds.sizes)})")
        if "time" not in ds.dims:
            if "time" not in ds.coords:
                raise DataError(f"{p} has no 'time' (initialisation time) coordinate")
            ds = ds.expand_dims("time")
        parts.append(ds)
    out = parts[0] if len(parts) == 1 else xr.concat(parts, dim="time", data_vars="minimal", coords="minimal",
                                                     compat="override", join="outer")
    return _step_as_hours(out)


def _step_as_hours(ds: xr.Dataset) -> xr.Dataset:
    step = ds["step"]
    if np.issubdtype(step.dtype, np.timedelta64):
        hours = (step.values / np.timedelta64(1, "h")).astype(np.int64)
        ds = ds.assign_coords(step=hours)
    return ds.drop_vars([c for c in ("valid_time",) if c in ds.coords])


def open_reference(path: str | Path) -> xr.Dataset:
    p = str(path)
    if not Path(p).exists():
        raise DataError(f"reference store {p} does not exist")
    ds = xr.open_zarr(p, consolidated=None) if Path(p).is_dir() else xr.open_dataset(p)
    if "time" not in ds.dims:
        raise DataError(f"reference {p} needs a 'time' dimension (dims {dict(ds.sizes)})")
    return ds


def split_channels(ds: xr.Dataset) -> xr.Dataset:
    """One data variable per channel: ``t`` with levels -> ``t500``, ``t850``...; drops the level dim."""
    out = {}
    for name, da in ds.data_vars.items():
        if "level" in da.dims:
            for lev in da["level"].values:
                out[f"{name}{int(lev)}"] = da.sel(level=lev, drop=True)
        else:
            out[str(name)] = da
    return xr.Dataset(out)


def score_system(forecast: xr.Dataset, reference: xr.Dataset, metric_names: Sequence[str] = ("rmse", "bias"),
                 climatology: xr.Dataset | None = None) -> pd.DataFrame:
    """Long table (channel, step, metric, value) of one system against the reference."""
    common = [v for v in forecast.data_vars if v in reference.data_vars]
    if not common:
        raise DataError(f"forecast and reference share no variable (forecast: {list(forecast.data_vars)}, "
                        f"reference: {list(reference.data_vars)})")
    f, r = metrics.align_forecast(forecast[common], reference[common])
    if f.sizes["time"] == 0:
        raise DataError("no initialisation time of the forecast has all its valid times in the reference")
    if "level" in f.dims:
        levels = np.intersect1d(f["level"].values, r["level"].values)
        f, r = f.sel(level=levels), r.sel(level=levels)
    f = split_channels(f.load())
    r = split_channels(r.load())
    clim = split_channels(climatology) if climatology is not None else None
    card = metrics.scorecard(f, r, metrics=metric_names, climatology=clim)
    rows = []
    for ch in card.data_vars:
        for m in card["metric"].values:
            vals = card[ch].sel(metric=m)
            for s, v in zip(card["step"].values, np.atleast_1d(vals.values)):
                rows.append({"channel": ch, "step": int(s), "metric": str(m), "value": float(v)})
    return pd.DataFrame(rows)


@dataclass
class Comparison:
    """How often ``system`` beats ``baseline`` over (channel, lead) cells for one metric."""

    system: str
    baseline: str
    metric: str
    cells: int
    wins: int
    table: pd.DataFrame = field(repr=False)

    @property
    def share(self) -> float:
        return self.wins / self.cells if self.cells else float("nan")


def compare(scores: pd.DataFrame, system: str, baseline: str, metric: str = "rmse",
            skip_step0: bool = True) -> Comparison:
    """Cell-by-cell comparison on one metric (lower is better except ACC)."""
    s = scores[(scores.system == system) & (scores.metric == metric)].set_index(["channel", "step"]).value
    b = scores[(scores.system == baseline) & (scores.metric == metric)].set_index(["channel", "step"]).value
    joined = pd.concat({"system": s, "baseline": b}, axis=1).dropna()
    if skip_step0:
        joined = joined[joined.index.get_level_values("step") > 0]
    better = joined.system < joined.baseline if LOWER_IS_BETTER.get(metric, True) else \
        joined.system > joined.baseline
    joined["better"] = better
    return Comparison(system, baseline, metric, int(len(joined)), int(better.sum()), joined)


def write_scorecard(scores: pd.DataFrame, out: Path, primary: str, baselines: Sequence[str],
                    metric: str = "rmse") -> dict[str, object]:
    """Write scores.csv, scorecard.md, scorecard.png and summary.json under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out / "scores.csv", index=False)
    comparisons = [compare(scores, primary, b, metric) for b in baselines]
    lines = [f"# Scorecard: {primary}", ""]
    pivot = scores[(scores.metric == metric)].pivot_table(index=["channel", "system"], columns="step",
                                                           values="value")
    lines.append(f"## {metric.upper()} by channel and lead (hours)")
    lines.append("")
    header = "| channel | system | " + " | ".join(str(c) for c in pivot.columns) + " |"
    lines += [header, "|" + "---|" * (len(pivot.columns) + 2)]
    for (ch, sysname), row in pivot.iterrows():
        lines.append(f"| {ch} | {sysname} | " + " | ".join(f"{v:.4g}" for v in row.values) + " |")
    lines.append("")
    summary: dict[str, object] = {"primary": primary, "metric": metric, "comparisons": []}
    for c in comparisons:
        lines.append(f"- **{c.system}** beats **{c.baseline}** on {c.metric.upper()} in {c.wins} of {c.cells} "
                     f"(channel, lead) cells ({100 * c.share:.1f}%)")
        summary["comparisons"].append({"system": c.system, "baseline": c.baseline, "metric": c.metric,  # type: ignore[union-attr]
                                       "cells": c.cells, "wins": c.wins, "share": c.share})
    (out / "scorecard.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if comparisons:
        _plot(comparisons, out / "scorecard.png")
    return summary


def _plot(comparisons: Sequence[Comparison], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(comparisons), figsize=(5 + 4 * len(comparisons), 6), squeeze=False)
    for ax, c in zip(axes[0], comparisons):
        t = c.table
        rel = (t.system - t.baseline) / t.baseline.abs().where(t.baseline.abs() > 0)
        grid = rel.unstack("step")
        lim = float(np.nanmax(np.abs(grid.values))) if np.isfinite(grid.values).any() else 1.0
        im = ax.imshow(grid.values * 100, cmap="RdBu_r", vmin=-lim * 100, vmax=lim * 100, aspect="auto")
        ax.set_yticks(range(len(grid.index)), grid.index, fontsize=6)
        ax.set_xticks(range(len(grid.columns)), [str(s) for s in grid.columns], fontsize=6, rotation=90)
        ax.set_xlabel("lead (h)")
        ax.set_title(f"{c.system} vs {c.baseline}: {c.metric.upper()} change (%)\n"
                     f"blue = {c.system} better in {100 * c.share:.0f}% of cells", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def persistence_forecast(reference: xr.Dataset, init_times: np.ndarray, steps: np.ndarray) -> xr.Dataset:
    """Persistence: the reference state at initialisation time, held for every lead."""
    ini = reference.sel(time=init_times)
    return ini.expand_dims(step=np.asarray(steps, dtype=np.int64)).transpose("time", "step", ...)
