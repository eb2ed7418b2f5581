"""Per-channel normalisation statistics computed from data.

Means and standard deviations of every state channel, of the ``step``-hour
tendencies (x_{t+step} - x_t, which the residual forecaster predicts), and of
diagnostic outputs. Statistics are area-weighted (WeatherBench 2 latitude
weights), accumulated in float64 over a dataset or an iterator of datasets
(chunks along ``time``) so a long archive never has to fit in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import xarray as xr

from fuxiops.catalog import VariableSet
from fuxiops.errors import DataError
from fuxiops.grids import Grid
from fuxiops.state import check_dataset, to_channels

TIME = "time"


@dataclass(frozen=True)
class NormStats:
    """Normalisation of one network: per-channel arrays (float32) named by channel."""

    channels: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    res_mean: np.ndarray
    res_std: np.ndarray
    diag_channels: tuple[str, ...] = ()
    diag_mean: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    diag_std: np.ndarray = field(default_factory=lambda: np.ones(0, np.float32))
    #: Number of states (and tendencies) the statistics were computed from.
    n_samples: int = 0
    n_tendencies: int = 0

    def to_dict(self) -> dict[str, Any]:
        f = lambda a: [float(x) for x in np.asarray(a, np.float32)]  # noqa: E731 - exact float32 -> JSON
        return {"channels": list(self.channels), "mean": f(self.mean), "std": f(self.std),
                "res_mean": f(self.res_mean), "res_std": f(self.res_std),
                "diag_channels": list(self.diag_channels), "diag_mean": f(self.diag_mean),
                "diag_std": f(self.diag_std), "n_samples": self.n_samples, "n_tendencies": self.n_tendencies}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NormStats":
        a = lambda k: np.asarray(d.get(k, []), dtype=np.float32)  # noqa: E731
        return cls(tuple(d["channels"]), a("mean"), a("std"), a("res_mean"), a("res_std"),
                   tuple(d.get("diag_channels", ())), a("diag_mean"), a("diag_std"),
                   int(d.get("n_samples", 0)), int(d.get("n_tendencies", 0)))

    def tensors(self) -> dict[str, np.ndarray]:
        """Buffers of the forecaster module by name."""
        return {"mean": self.mean, "std": self.std, "res_mean": self.res_mean, "res_std": self.res_std,
                "diag_mean": self.diag_mean, "diag_std": self.diag_std}

    @classmethod
    def identity(cls, variables: VariableSet) -> "NormStats":
        """Mean 0, std 1 everywhere (tests; untrained networks)."""
        n, k = len(variables.state_channels), len(variables.diagnostic_channels)
        z, o = np.zeros(n, np.float32), np.ones(n, np.float32)
        return cls(tuple(variables.state_names), z, o, z.copy(), o.copy(),
                   tuple(c.name for c in variables.diagnostic_channels), np.zeros(k, np.float32),
                   np.ones(k, np.float32))


class _Moments:
    """Weighted running sums in float64 per channel."""

    def __init__(self, n: int) -> None:
        self.w = 0.0
        self.s1 = np.zeros(n)
        self.s2 = np.zeros(n)
        self.count = 0

    def add(self, arr: np.ndarray, wlat: np.ndarray) -> None:
        """``arr`` (N, C, lat, lon)."""
        a = arr.astype(np.float64)
        w = wlat[None, None, :, None]
        self.s1 += (a * w).sum(axis=(0, 2, 3))
        self.s2 += (a * a * w).sum(axis=(0, 2, 3))
        self.w += float(wlat.sum() * arr.shape[0] * arr.shape[3])
        self.count += arr.shape[0]

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.s1 / self.w
        var = np.maximum(self.s2 / self.w - mean ** 2, 0.0)
        std = np.sqrt(var)
        # A constant channel would divide by zero; floor relative to its magnitude.
        std = np.maximum(std, np.maximum(1e-6 * np.abs(mean), 1e-8))
        return mean.astype(np.float32), std.astype(np.float32)


def compute_stats(data: xr.Dataset | Iterable[xr.Dataset], variables: VariableSet, grid: Grid,
                  step_hours: int = 6) -> NormStats:
    """Statistics from a dataset with a ``time`` dim, or an iterator of such chunks in time order.

    Tendencies pair states exactly ``step_hours`` apart (also across chunk
    boundaries); diagnostics are used when the data has them.
    """
    chunks = [data] if isinstance(data, xr.Dataset) else data
    chans = variables.state_channels
    dchans = variables.diagnostic_channels
    wlat = grid.lat_weights
    st, rs, dg = _Moments(len(chans)), _Moments(len(chans)), _Moments(len(dchans))
    prev_t: np.datetime64 | None = None
    prev_x: np.ndarray | None = None
    step = np.timedelta64(step_hours, "h")
    for i, ds in enumerate(chunks):
        if TIME not in ds.dims:
            raise DataError(f"normalisation data chunk {i} has no 'time' dimension (dims: {dict(ds.sizes)})")
        check_dataset(ds, variables, grid, f"normalisation data chunk {i}")
        ds = ds.sortby(TIME)
        times = ds[TIME].values.astype("datetime64[ns]")
        x = to_channels(ds, chans)
        if not np.all(np.isfinite(x)):
            raise DataError(f"normalisation data chunk {i} has non-finite values")
        st.add(x, wlat)
        if dchans and all(c.variable.name in ds.data_vars for c in dchans):
            d = to_channels(ds, dchans)
            ok = np.all(np.isfinite(d), axis=(1, 2, 3))
            if ok.any():
                dg.add(d[ok], wlat)
        all_t = times if prev_t is None else np.concatenate([[prev_t], times])
        all_x = x if prev_x is None else np.concatenate([prev_x[None], x])
        index = {t: j for j, t in enumerate(all_t)}
        pairs = [(index[t], index[t + step]) for t in all_t if t + step in index]
        if pairs:
            a, b = zip(*pairs)
            rs.add(all_x[list(b)] - all_x[list(a)], wlat)
        prev_t, prev_x = times[-1], x[-1]
    if st.count == 0:
        raise DataError("no data to compute normalisation statistics from")
    if rs.count == 0:
        raise DataError(f"no pair of states {step_hours} h apart in the data: cannot compute tendency statistics")
    mean, std = st.result()
    rmean, rstd = rs.result()
    if dchans:
        if dg.count == 0:
            raise DataError(f"diagnostics {[c.name for c in dchans]} are configured but absent from the data")
        dmean, dstd = dg.result()
    else:
        dmean, dstd = np.zeros(0, np.float32), np.ones(0, np.float32)
    return NormStats(tuple(variables.state_names), mean, std, rmean, rstd, tuple(c.name for c in dchans),
                     dmean, dstd, st.count, rs.count)
