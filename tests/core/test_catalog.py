"""Variable catalog: the production state, channel naming, API names and GRIB identities."""

from __future__ import annotations

import numpy as np
import pytest

from fuxiops.catalog import PRODUCTION, PRODUCTION_LEVELS, TESTBED, VARIABLES, VariableSet, parse_channel
from fuxiops.errors import UnknownVariableError


def test_production_state_is_69_channels_plus_tp6() -> None:
    assert len(PRODUCTION.state_channels) == 69
    assert len(PRODUCTION.output_channels) == 70
    assert PRODUCTION.output_names[-1] == "tp6"
    assert PRODUCTION.levels == PRODUCTION_LEVELS
    assert PRODUCTION.state_names[:2] == ["z50", "z100"]
    assert PRODUCTION.state_names[-4:] == ["t2m", "u10", "v10", "msl"]


def test_testbed_is_dry() -> None:
    assert "r" not in TESTBED.upper_air and TESTBED.diagnostics == ()
    assert len(TESTBED.state_channels) == 4 * 13 + 4


@pytest.mark.parametrize("name,api", [("t2m", "temperature_2m"), ("msl", "pressure_msl"),
                                      ("z500", "geopotential_height_500hPa"), ("t850", "temperature_850hPa"),
                                      ("u10", "wind_u_component_10m"), ("tp6", "precipitation"),
                                      ("r700", "relative_humidity_700hPa")])
def test_api_names(name: str, api: str) -> None:
    assert parse_channel(name).api_name == api
    assert PRODUCTION.by_api_name(api).name == name


def test_parse_channel_levels() -> None:
    ch = parse_channel("t850")
    assert ch.variable.name == "t" and ch.level == 850 and ch.grib_level == 850
    assert parse_channel("t2m").grib_level == 2


@pytest.mark.parametrize("bad", ["q850", "temperature", "t", "xyz", ""])
def test_unknown_channels_name_the_allowed(bad: str) -> None:
    with pytest.raises(UnknownVariableError) as e:
        parse_channel(bad)
    assert repr(bad) in str(e.value) and "allowed" in str(e.value)


def test_variable_set_rejects_misplaced_names() -> None:
    with pytest.raises(UnknownVariableError, match="pressure-level"):
        VariableSet(upper_air=("t2m",))
    with pytest.raises(UnknownVariableError, match="single-level"):
        VariableSet(surface=("tp6",))
    with pytest.raises(ValueError, match="levels"):
        VariableSet(levels=(500, 500))
    with pytest.raises(UnknownVariableError, match="API variable"):
        PRODUCTION.by_api_name("temperature_3m")


def test_api_conversion_of_geopotential_to_height() -> None:
    z = VARIABLES["z"]
    assert np.isclose(5500 * 9.80665 * z.api_scale + z.api_offset, 5500.0)
    t = VARIABLES["t2m"]
    assert np.isclose(273.15 * t.api_scale + t.api_offset, 0.0)


def test_round_trip_dict() -> None:
    assert VariableSet.from_dict(PRODUCTION.to_dict()) == PRODUCTION
