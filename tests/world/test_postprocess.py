"""Sigma -> pressure levels, surface diagnostics and Gaussian -> regular regridding, on analytic columns."""

from __future__ import annotations

import numpy as np
import pytest

from fuxiops.grids import get_grid
from fuxiops.pipeline.world.model import KAPPA, RD, CoreConfig, NodalFields
from fuxiops.pipeline.world.postprocess import (ROUGHNESS_M, Regridder, sigma_to_pressure, surface_fields)

SIGMA = CoreConfig(layers=20).sigma_centers


def _gauss_lats(n: int) -> np.ndarray:
    x, _ = np.polynomial.legendre.leggauss(n)
    return np.degrees(np.arcsin(x))[::-1]  # north -> south


def _fields(t: np.ndarray, ps: float = 1.0e5, u: float = 10.0, nlat: int = 8, nlon: int = 16) -> NodalFields:
    shape = (len(SIGMA), nlat, nlon)
    return NodalFields(u=np.full(shape, u), v=np.zeros(shape), t=np.broadcast_to(t[:, None, None], shape).copy(),
                       ps=np.full((nlat, nlon), ps), lat=_gauss_lats(nlat), lon=np.arange(nlon) * 360.0 / nlon,
                       sigma=SIGMA)


def test_isothermal_column_is_exactly_hydrostatic() -> None:
    f = _fields(np.full(len(SIGMA), 250.0), ps=1.0e5)
    levels = (50, 100, 200, 500, 850, 925)
    out = sigma_to_pressure(f, levels)
    for i, lev in enumerate(levels):
        np.testing.assert_allclose(out["z"][i], RD * 250.0 * np.log(1000.0 / lev), rtol=1e-9)
        np.testing.assert_allclose(out["t"][i], 250.0)
        np.testing.assert_allclose(out["u"][i], 10.0)


def test_below_ground_uses_standard_lapse_rate() -> None:
    f = _fields(np.full(len(SIGMA), 280.0), ps=95000.0)
    out = sigma_to_pressure(f, (1000,))
    p_low = SIGMA[-1] * 95000.0
    expected_t = 280.0 * (1.0e5 / p_low) ** (RD * 0.0065 / 9.80616)
    np.testing.assert_allclose(out["t"][0], expected_t, rtol=1e-9)
    assert (out["z"][0] < 0).all()  # 1000 hPa lies below the ground of a 950 hPa surface


def test_surface_fields() -> None:
    f = _fields(np.full(len(SIGMA), 280.0), ps=101000.0, u=8.0)
    s = surface_fields(f)
    np.testing.assert_allclose(s["msl"], 101000.0)  # flat world at sea level
    np.testing.assert_allclose(s["t2m"], 280.0 * (1 / SIGMA[-1]) ** KAPPA)
    z_l = RD * 280.0 * np.log(1 / SIGMA[-1]) / 9.80616
    np.testing.assert_allclose(s["u10"], 8.0 * np.log(10 / ROUGHNESS_M) / np.log(z_l / ROUGHNESS_M))
    assert (s["u10"] < 8.0).all()


@pytest.mark.parametrize("grid_name", ["11.25deg", "2.8125deg"])
def test_regrid_scalar_linear_in_latitude_and_poles(grid_name: str) -> None:
    src_lat, src_lon = _gauss_lats(32), np.arange(64) * 5.625
    g = get_grid(grid_name)
    r = Regridder(src_lat, src_lon, g)
    field = np.broadcast_to(2.0 * src_lat[:, None] + 1.0, (32, 64))
    out = r.scalar(field)
    inner = np.abs(g.latitudes) <= src_lat[0]
    np.testing.assert_allclose(out[inner], np.broadcast_to(2 * g.latitudes[inner, None] + 1, out[inner].shape),
                               atol=1e-9)
    assert np.allclose(out[0], out[0, 0]) and np.allclose(out[-1], out[-1, 0])  # single pole value
    lon_field = np.broadcast_to(np.cos(np.radians(src_lon))[None, :], (32, 64))
    np.testing.assert_allclose(r.scalar(lon_field)[g.n_lat // 2], np.cos(np.radians(g.longitudes)), atol=5e-3)


def test_regrid_vector_uniform_flow_over_the_pole() -> None:
    """A uniform cross-polar flow (Vx, Vy) is recovered exactly on the pole rows."""
    src_lat, src_lon = _gauss_lats(32), np.arange(64) * 5.625
    lam = np.radians(src_lon)[None, :]
    vx, vy = 7.0, -3.0
    u = np.broadcast_to(-vx * np.sin(lam) + vy * np.cos(lam), (32, 64)).copy()
    v = np.where(src_lat[:, None] > 0, -(vx * np.cos(lam) + vy * np.sin(lam)), vx * np.cos(lam) + vy * np.sin(lam))
    g = get_grid("5.625deg")
    uu, vv = Regridder(src_lat, src_lon, g).vector(u, v)
    tl = np.radians(g.longitudes)
    np.testing.assert_allclose(uu[0], -vx * np.sin(tl) + vy * np.cos(tl), atol=1e-9)
    np.testing.assert_allclose(vv[0], -(vx * np.cos(tl) + vy * np.sin(tl)), atol=1e-9)
    np.testing.assert_allclose(vv[-1], vx * np.cos(tl) + vy * np.sin(tl), atol=1e-9)
