"""Model fields (sigma layers, Gaussian grid) -> the state convention (pressure levels, regular grid).

Vertical (per column, all vectorised):

* geopotential on sigma layers by hydrostatic integration from the flat
  surface (Z_s = 0), trapezoidal in ln p;
* T, u, v linear in ln p between layer centres; Z exactly hydrostatic for a
  temperature linear in ln p;
* above the top layer centre: isothermal (Z) and constant T, u, v;
* below the lowest layer centre, including levels under the ground
  (e.g. 1000 hPa where ps < 1000 hPa): T follows the ICAO standard lapse rate
  6.5 K/km from the lowest layer, Z the matching hypsometric profile, and u, v
  keep the lowest-layer value (as ECMWF's post-processing does below ground).

Single-level variables from the lowest layer L (about 200 m above ground):

* ``msl`` = surface pressure: the Held-Suarez world is flat at sea level;
* ``t2m`` = T_L (ps / p_L)^kappa: dry-adiabatic descent of the well-mixed layer;
* ``u10``, ``v10`` = wind_L * ln(10 m / z0) / ln(z_L / z0), neutral log law with
  roughness length z0 = 0.03 m (WMO "open flat terrain").

Horizontal: separable linear interpolation, periodic in longitude, from the
Gaussian latitudes to the regular grid. Pole rows (outside the Gaussian
latitudes) come from the nearest ring: scalars take its mean, winds the
wavenumber-1 fit of a single horizontal vector at the pole.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from fuxiops.catalog import VariableSet
from fuxiops.grids import Grid
from fuxiops.pipeline.world.model import GRAVITY, KAPPA, RD, NodalFields
from fuxiops.state import LAT, LEVEL, LON, coord_attrs, variable_attrs

LAPSE_RATE = 0.0065  # K m-1, ICAO standard atmosphere
ROUGHNESS_M = 0.03
_LAPSE_EXP = RD * LAPSE_RATE / GRAVITY


def geopotential_on_sigma(t: np.ndarray, ps: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Geopotential (m2 s-2) at layer centres of a flat-surface sigma column, (layers, ...)."""
    z = np.empty_like(t)
    z[-1] = RD * t[-1] * np.log(1.0 / sigma[-1])
    for k in range(len(sigma) - 2, -1, -1):
        z[k] = z[k + 1] + RD * 0.5 * (t[k] + t[k + 1]) * np.log(sigma[k + 1] / sigma[k])
    return z


def sigma_to_pressure(f: NodalFields, levels_hpa: tuple[int, ...]) -> dict[str, np.ndarray]:
    """z, t, u, v on pressure levels (level, lat, lon) on the model's Gaussian grid."""
    sig = np.asarray(f.sigma, dtype=np.float64)
    z = geopotential_on_sigma(f.t, f.ps, sig)
    lnp = np.log(sig[:, None, None] * f.ps[None])  # (K, lat, lon), increasing with k
    K = len(sig)
    out = {k: np.empty((len(levels_hpa),) + f.ps.shape) for k in ("z", "t", "u", "v")}
    for i, lev in enumerate(levels_hpa):
        lp = np.log(lev * 100.0)
        # index of the first layer with ln p >= target (between khi-1 and khi)
        khi = np.sum(lnp < lp, axis=0)
        inside = (khi > 0) & (khi < K)
        kh = np.clip(khi, 1, K - 1)
        kl = kh - 1
        take = lambda a, k: np.take_along_axis(a, k[None], axis=0)[0]
        lp_l, lp_h = take(lnp, kl), take(lnp, kh)
        w = (lp - lp_l) / (lp_h - lp_l)
        t_l, t_h = take(f.t, kl), take(f.t, kh)
        t_in = t_l + w * (t_h - t_l)
        z_in = take(z, kl) - RD * (lp - lp_l) * 0.5 * (t_l + t_in)
        u_in = take(f.u, kl) + w * (take(f.u, kh) - take(f.u, kl))
        v_in = take(f.v, kl) + w * (take(f.v, kh) - take(f.v, kl))
        # above the top centre: isothermal
        top = khi == 0
        t_top = f.t[0]
        z_top = z[0] - RD * t_top * (lp - lnp[0])
        # below the lowest centre: standard lapse rate
        bot = khi >= K
        ratio = np.exp((lp - lnp[-1]) * _LAPSE_EXP)  # (p / p_L)^(R gamma / g)
        t_bot = f.t[-1] * ratio
        z_bot = z[-1] + (f.t[-1] / LAPSE_RATE) * (1.0 - ratio) * GRAVITY
        out["t"][i] = np.where(inside, t_in, np.where(top, t_top, t_bot))
        out["z"][i] = np.where(inside, z_in, np.where(top, z_top, z_bot))
        out["u"][i] = np.where(inside, u_in, np.where(top, f.u[0], f.u[-1]))
        out["v"][i] = np.where(inside, v_in, np.where(top, f.v[0], f.v[-1]))
    return out


def surface_fields(f: NodalFields) -> dict[str, np.ndarray]:
    """t2m, u10, v10, msl from the lowest sigma layer and the surface pressure (see module doc)."""
    sig_l = float(f.sigma[-1])
    z_l = RD * f.t[-1] * np.log(1.0 / sig_l) / GRAVITY  # height of the lowest layer centre, m
    t2m = f.t[-1] * (1.0 / sig_l) ** KAPPA
    factor = np.log(10.0 / ROUGHNESS_M) / np.log(z_l / ROUGHNESS_M)
    return {"t2m": t2m, "u10": f.u[-1] * factor, "v10": f.v[-1] * factor, "msl": f.ps.copy()}


class Regridder:
    """Separable linear interpolation from a (lat N->S, lon from 0) source grid to a named regular grid."""

    def __init__(self, src_lat: np.ndarray, src_lon: np.ndarray, grid: Grid) -> None:
        self.grid = grid
        self.src_lat = np.asarray(src_lat, dtype=np.float64)
        self.src_lon = np.asarray(src_lon, dtype=np.float64)
        nlon = self.src_lon.size
        dlon = 360.0 / nlon
        x = np.mod(grid.longitudes - self.src_lon[0], 360.0) / dlon
        j0 = np.floor(x).astype(np.int64) % nlon
        self.j0, self.j1, self.wx = j0, (j0 + 1) % nlon, x - np.floor(x)
        # latitude: extend the source with the two poles (row -1 = N pole, row n = S pole)
        ext = np.concatenate([[90.0], self.src_lat, [-90.0]])
        tl = grid.latitudes
        # ext is descending; find i with ext[i] >= tl >= ext[i+1]
        i = np.clip(np.searchsorted(-ext, -tl, side="right") - 1, 0, ext.size - 2)
        self.i0, self.i1 = i, i + 1
        self.wy = (ext[i] - tl) / (ext[i] - ext[i + 1])
        lam = np.deg2rad(self.src_lon)
        self._cos, self._sin = np.cos(lam), np.sin(lam)
        tlam = np.deg2rad(grid.longitudes)
        self._tcos, self._tsin = np.cos(tlam), np.sin(tlam)

    def _lon(self, a: np.ndarray) -> np.ndarray:
        return a[..., self.j0] * (1 - self.wx) + a[..., self.j1] * self.wx

    def _finish(self, ext: np.ndarray) -> np.ndarray:
        out = ext[..., self.i0, :] * (1 - self.wy)[:, None] + ext[..., self.i1, :] * self.wy[:, None]
        return out

    def scalar(self, a: np.ndarray) -> np.ndarray:
        """Regrid (..., lat, lon); pole rows are the means of the nearest rings."""
        b = self._lon(a)
        n = b[..., :1, :].mean(axis=-1, keepdims=True) * np.ones_like(b[..., :1, :])
        s = b[..., -1:, :].mean(axis=-1, keepdims=True) * np.ones_like(b[..., -1:, :])
        return self._finish(np.concatenate([n, b, s], axis=-2))

    def vector(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Regrid a wind (u east, v north); pole rows from the fitted pole vector."""
        bu, bv = self._lon(u), self._lon(v)
        nl = u.shape[-1]
        rows = []
        for ring, sgn in ((0, -1.0), (-1, 1.0)):
            ur, vr = u[..., ring, :], v[..., ring, :]
            # u = -Vx sin(l) + Vy cos(l); v = sgn (Vx cos(l) + Vy sin(l))  (sgn -1 at the north pole)
            vx = (-(ur * self._sin).sum(-1) + sgn * (vr * self._cos).sum(-1)) / nl
            vy = ((ur * self._cos).sum(-1) + sgn * (vr * self._sin).sum(-1)) / nl
            pu = -vx[..., None] * self._sin + vy[..., None] * self._cos
            pv = sgn * (vx[..., None] * self._cos + vy[..., None] * self._sin)
            rows.append((self._lon(pu)[..., None, :], self._lon(pv)[..., None, :]))
        eu = np.concatenate([rows[0][0], bu, rows[1][0]], axis=-2)
        ev = np.concatenate([rows[0][1], bv, rows[1][1]], axis=-2)
        return self._finish(eu), self._finish(ev)


def to_state_arrays(f: NodalFields, regrid: Regridder, variables: VariableSet) -> dict[str, np.ndarray]:
    """All state variables of ``variables`` on the regular grid, float32."""
    plev = sigma_to_pressure(f, tuple(variables.levels))
    sfc = surface_fields(f)
    out: dict[str, np.ndarray] = {}
    uu, vv = regrid.vector(plev["u"], plev["v"])
    out.update(z=regrid.scalar(plev["z"]), t=regrid.scalar(plev["t"]), u=uu, v=vv)
    u10, v10 = regrid.vector(sfc["u10"], sfc["v10"])
    out.update(t2m=regrid.scalar(sfc["t2m"]), u10=u10, v10=v10, msl=regrid.scalar(sfc["msl"]))
    names = list(variables.upper_air) + list(variables.surface)
    missing = [n for n in names if n not in out]
    if missing:
        from fuxiops.errors import UnknownVariableError
        raise UnknownVariableError(missing[0], sorted(out), what="variable of the dry testbed world")
    return {n: out[n].astype(np.float32) for n in names}


def state_dataset(arrays: list[dict[str, np.ndarray]], leading: dict[str, np.ndarray], grid: Grid,
                  variables: VariableSet, attrs: dict[str, object] | None = None) -> xr.Dataset:
    """Stack per-time arrays into a state Dataset with CF attributes (leading dims e.g. time or time+step)."""
    dims = list(leading)
    shape = tuple(len(v) for v in leading.values())
    data_vars = {}
    for name in list(variables.upper_air) + list(variables.surface):
        stacked = np.stack([a[name] for a in arrays]).astype(np.float32)
        stacked = stacked.reshape(shape + stacked.shape[1:])
        vdims = dims + ([LEVEL] if name in variables.upper_air else []) + [LAT, LON]
        data_vars[name] = xr.DataArray(stacked, dims=vdims, attrs=variable_attrs(name))
    ca = coord_attrs()
    coords: dict[str, object] = {LAT: (LAT, grid.latitudes, ca[LAT]), LON: (LON, grid.longitudes, ca[LON]),
                                 LEVEL: (LEVEL, np.asarray(variables.levels, dtype=np.int64), ca[LEVEL])}
    coords.update(leading)
    return xr.Dataset(data_vars, coords=coords, attrs=dict(attrs or {}))
