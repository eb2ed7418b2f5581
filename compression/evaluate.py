"""Skill of forecasters on a state series: latitude-weighted RMSE and ACC per channel and lead.

Every forecaster (torch, ONNX, pruned, distilled) is run through the same
:class:`~fuxiops.models.base.Forecaster` ``step`` interface from the same
initial times of a held-out series, autoregressively, and compared with the
series itself (the truth in the testbed) at the requested lead days, using
WeatherBench 2 conventions: RMSE = sqrt(mean over inits of the weighted
spatial MSE); ACC on anomalies from a climatology (the time mean per grid
point and hour of day of a reference series), averaged over inits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from fuxiops.compression.data import StateSeries
from fuxiops.errors import DataError
from fuxiops.grids import latitude_weights

#: The headline channels of issue 11.
HEADLINE = ("z500", "t850", "t2m", "u10", "msl")


@dataclass
class Skill:
    """RMSE / ACC arrays (lead, channel) for one forecaster."""

    name: str
    channels: list[str]
    lead_days: list[float]
    rmse: np.ndarray
    acc: np.ndarray
    n_inits: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "n_inits": self.n_inits,
                "rmse": {c: {f"day{d:g}": float(self.rmse[i, j]) for i, d in enumerate(self.lead_days)}
                         for j, c in enumerate(self.channels)},
                "acc": {c: {f"day{d:g}": float(self.acc[i, j]) for i, d in enumerate(self.lead_days)}
                        for j, c in enumerate(self.channels)}, **self.extra}


def climatology(series: StateSeries) -> dict[int, np.ndarray]:
    """Mean state per hour of day (C, lat, lon): the anomaly reference for ACC."""
    hours = series.times.astype("datetime64[h]").astype(np.int64) % 24
    out = {}
    for h in np.unique(hours):
        out[int(h)] = series.data[hours == h].mean(axis=0)
    return out


def evaluate(forecaster: Any, truth: StateSeries, lead_days: Sequence[float] = (1, 3, 5, 10),
             channels: Sequence[str] = HEADLINE, n_inits: int = 4, clim: dict[int, np.ndarray] | None = None,
             name: str | None = None, progress: bool = False) -> Skill:
    """Score ``forecaster`` from ``n_inits`` initial times spread over ``truth``."""
    c = forecaster.coords
    names = c.variables.state_names
    chans = [ch for ch in channels if ch in names]
    if not chans:
        raise DataError(f"none of the channels {list(channels)} is predicted (the model has {names[:8]}...)")
    cidx = [names.index(ch) for ch in chans]
    steps_per_day = 24 // c.step_hours
    lead_steps = [int(round(d * steps_per_day)) for d in lead_days]
    n_steps = max(lead_steps)
    n_in = c.n_inputs
    starts = np.arange(n_in - 1, len(truth) - n_steps)
    if len(starts) == 0:
        raise DataError(f"truth series of {len(truth)} states is too short for {max(lead_days)} day forecasts")
    chosen = starts[np.linspace(0, len(starts) - 1, min(n_inits, len(starts))).round().astype(int)]
    clim = clim or climatology(truth)
    w = latitude_weights(truth.grid.latitudes)[:, None]
    se = np.zeros((len(lead_steps), len(chans)))
    acc = np.zeros((len(lead_steps), len(chans)))
    it: Any = chosen
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(chosen, desc=f"evaluate {name or forecaster.name}", unit="init")
    for i0 in it:
        window, t = truth.window(int(i0), n_in)
        window = window.copy()
        for k in range(1, n_steps + 1):
            out = forecaster.step(window, t + np.timedelta64((k - 1) * c.step_hours, "h"))
            window = np.concatenate([window[1:], out[None, :window.shape[1]]], axis=0)
            if k in lead_steps:
                li = lead_steps.index(k)
                vi = int(i0) + k
                pred, obs = out[cidx].astype(np.float64), truth.data[vi, cidx].astype(np.float64)
                hour = int(truth.times[vi].astype("datetime64[h]").astype(np.int64) % 24)
                ref = clim.get(hour, next(iter(clim.values())))[cidx].astype(np.float64)
                se[li] += ((pred - obs) ** 2 * w).mean(axis=(-1, -2))
                fa, oa = pred - ref, obs - ref
                num = (fa * oa * w).mean(axis=(-1, -2))
                den = np.sqrt((fa**2 * w).mean(axis=(-1, -2)) * (oa**2 * w).mean(axis=(-1, -2)))
                acc[li] += num / np.maximum(den, 1e-30)
    n = len(chosen)
    return Skill(name or getattr(forecaster, "name", "forecaster"), chans, [float(d) for d in lead_days],
                 np.sqrt(se / n), acc / n, n)
