"""Named grids and WeatherBench 2 latitude weights."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuxiops.errors import GridError
from fuxiops.grids import GRIDS, get_grid, grid_from_coords, latitude_weights


def test_production_grid() -> None:
    g = get_grid("0.25deg")
    assert g.shape == (721, 1440)
    assert g.latitudes[0] == 90 and g.latitudes[-1] == -90 and g.longitudes[-1] == 359.75


def test_weights_match_weatherbench2_definition() -> None:
    g = get_grid("1.5deg")
    w = g.lat_weights
    assert np.isclose(w.mean(), 1.0)
    # Interior rows: cell from lat-d/2 to lat+d/2.
    lat = np.deg2rad(g.latitudes[10])
    d = np.deg2rad(g.resolution) / 2
    raw_interior = np.sin(lat + d) - np.sin(lat - d)
    # Pole rows: from 90 - d/2 to 90.
    raw_pole = 1 - np.sin(np.pi / 2 - d)
    assert np.isclose(w[10] / w[0], raw_interior / raw_pole)
    assert np.allclose(w, w[::-1])


def test_weights_independent_of_latitude_order() -> None:
    lat = get_grid("5.625deg").latitudes
    assert np.allclose(latitude_weights(lat), latitude_weights(lat[::-1])[::-1])


@settings(max_examples=50, deadline=None)
@given(lat=st.floats(-90, 90), lon=st.floats(-720, 720))
def test_nearest_index_is_nearest(lat: float, lon: float) -> None:
    g = get_grid("5.625deg")
    i, j = g.nearest_index(lat, lon)
    assert abs(g.latitudes[i] - lat) <= g.resolution / 2 + 1e-9
    dlon = (g.longitudes[j] - lon + 180) % 360 - 180
    assert abs(dlon) <= g.resolution / 2 + 1e-9


def test_grid_from_coords_and_errors() -> None:
    g = get_grid("2.8125deg")
    assert grid_from_coords(g.latitudes, g.longitudes) is g
    with pytest.raises(GridError, match="not the coordinates"):
        grid_from_coords(g.latitudes[::-1], g.longitudes)
    with pytest.raises(GridError, match="matches no named grid"):
        grid_from_coords(np.linspace(90, -90, 7), np.arange(10.0))
    with pytest.raises(GridError, match="allowed: 0.25deg"):
        get_grid("0.3deg")


def test_all_named_grids_are_consistent() -> None:
    for name, g in GRIDS.items():
        assert g.name == name
        assert np.isclose(g.latitudes[1] - g.latitudes[0], -g.resolution)
