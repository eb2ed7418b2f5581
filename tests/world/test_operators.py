"""Observation operators against analytic fields (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from fuxiops.grids import get_grid
from fuxiops.pipeline.world.obs.operators import (MWTS_CHANNELS, Bilinear, brightness_temperature, interp_log_p,
                                                  mwts_weights, pressure_at_height, refractivity, wind_dir_speed,
                                                  wind_uv)
from fuxiops.errors import DataError

LEVELS = np.array([50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000], dtype=float)


@pytest.mark.parametrize("grid_name", ["11.25deg", "5.625deg", "2.8125deg"])
def test_bilinear_exact_for_linear_field(grid_name: str) -> None:
    g = get_grid(grid_name)
    lat2, lon2 = np.meshgrid(g.latitudes, g.longitudes, indexing="ij")
    field = 3.0 * lat2 - 0.7 * lon2 + 5.0
    rng = np.random.default_rng(0)
    lat = rng.uniform(-90, 90, 500)
    lon = rng.uniform(0, g.longitudes[-1], 500)  # linear in lon is not periodic: stay off the seam
    got = Bilinear.build(g.latitudes, g.longitudes, lat, lon)(field)
    np.testing.assert_allclose(got, 3.0 * lat - 0.7 * lon + 5.0, rtol=0, atol=1e-9)


def test_bilinear_periodic_across_seam_and_poles() -> None:
    g = get_grid("5.625deg")
    lat2, lon2 = np.meshgrid(g.latitudes, g.longitudes, indexing="ij")
    field = 2.0 * lat2 + np.cos(np.radians(lon2))
    lon = np.array([359.0, -1.0, 361.0, 0.0, 354.375])
    lat = np.array([10.0, 10.0, 10.0, 90.0, -90.0])
    got = Bilinear.build(g.latitudes, g.longitudes, lat, lon)(field)
    # 359, -1 and 361 are the same meridian up to periodicity
    assert got[0] == pytest.approx(got[1]) and got[0] == pytest.approx(got[2], abs=0.01)
    assert got[0] == pytest.approx(20.0 + np.cos(np.radians(359.0)), abs=2e-3)
    assert got[3] == pytest.approx(181.0) and got[4] == pytest.approx(-180.0 + np.cos(np.radians(354.375)))
    with pytest.raises(DataError):
        Bilinear.build(g.latitudes, g.longitudes, np.array([95.0]), np.array([0.0]))


def test_log_p_interpolation_exact_for_linear_in_log_p() -> None:
    prof = (10.0 + 4.0 * np.log(LEVELS))[:, None] * np.ones((1, 3))
    p = np.array([75.0, 333.0, 990.0])
    np.testing.assert_allclose(interp_log_p(LEVELS, prof, p), 10.0 + 4.0 * np.log(p), atol=1e-9)


def test_pressure_at_height_isothermal() -> None:
    r, t, g0 = 287.0, 250.0, 9.80665
    z = r * t * np.log(1000.0 / LEVELS)[:, None] * np.ones((1, 2))  # geopotential, surface at 1000 hPa
    h = np.array([1000.0, 5000.0, 15000.0, 30000.0])
    p = pressure_at_height(LEVELS, z, h)
    np.testing.assert_allclose(p[:3, 0], 1000.0 * np.exp(-g0 * h[:3] / (r * t)), rtol=1e-9)
    assert np.isnan(p[3]).all()  # above the top level


def test_refractivity_known_values() -> None:
    assert refractivity(1000.0, 288.15) == pytest.approx(77.6 * 1000 / 288.15)
    assert refractivity(1000.0, 288.15) == pytest.approx(269.30, abs=0.01)
    # moist term: 3.73e5 * 10 / 288.15^2 = 44.92
    assert refractivity(1000.0, 288.15, 10.0) - refractivity(1000.0, 288.15) == pytest.approx(44.92, abs=0.01)


def test_brightness_temperature_weighting() -> None:
    w = mwts_weights(LEVELS)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert (w >= 0).all()
    iso = np.full((LEVELS.size, 4), 231.5)
    np.testing.assert_allclose(brightness_temperature(LEVELS, iso), 231.5)
    # each channel peaks at the level nearest its nominal peak
    for c, (_, peak, _) in enumerate(MWTS_CHANNELS):
        assert abs(np.log(LEVELS[np.argmax(w[c])] / peak)) < 0.45
    # a profile warm only at 850 hPa is seen mostly by the lowest channel
    warm = np.zeros((LEVELS.size, 1))
    warm[list(LEVELS).index(850)] = 10.0
    tb = brightness_temperature(LEVELS, warm)[:, 0]
    assert tb[0] == tb.max() and tb[-1] < 0.01


def test_wind_direction_convention_round_trip() -> None:
    d, s = wind_dir_speed(np.array([0.0, 5.0]), np.array([-3.0, 0.0]))
    np.testing.assert_allclose(d, [0.0, 270.0])  # northerly blows from 0, westerly from 270
    np.testing.assert_allclose(s, [3.0, 5.0])
    u, v = wind_uv(d, s)
    np.testing.assert_allclose([u, v], [[0.0, 5.0], [-3.0, 0.0]], atol=1e-12)
