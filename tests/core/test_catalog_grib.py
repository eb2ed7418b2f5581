"""The catalog's GRIB2 identities are right: write one field per variable with ecCodes, read back with cfgrib."""

from __future__ import annotations

from pathlib import Path

import eccodes
import numpy as np
import pytest
import xarray as xr

from fuxiops.catalog import PRODUCTION, Channel
from fuxiops.grids import get_grid

GRID = get_grid("11.25deg")


def _write_field(path: Path, ch: Channel) -> None:
    v = ch.variable
    h = eccodes.codes_grib_new_from_samples("GRIB2")
    try:
        for key, val in [("edition", 2), ("centre", "ecmf"), ("gridType", "regular_ll"),
                         ("Ni", GRID.n_lon), ("Nj", GRID.n_lat),
                         ("latitudeOfFirstGridPointInDegrees", 90.0), ("longitudeOfFirstGridPointInDegrees", 0.0),
                         ("latitudeOfLastGridPointInDegrees", -90.0),
                         ("longitudeOfLastGridPointInDegrees", float(GRID.longitudes[-1])),
                         ("iDirectionIncrementInDegrees", GRID.resolution),
                         ("jDirectionIncrementInDegrees", GRID.resolution),
                         ("dataDate", 20230101), ("dataTime", 0)]:
            eccodes.codes_set(h, key, val)
        if v.accumulation_hours:
            eccodes.codes_set(h, "productDefinitionTemplateNumber", 8)
            eccodes.codes_set(h, "typeOfStatisticalProcessing", 1)
        eccodes.codes_set(h, "discipline", v.discipline)
        eccodes.codes_set(h, "parameterCategory", v.parameter_category)
        eccodes.codes_set(h, "parameterNumber", v.parameter_number)
        eccodes.codes_set(h, "typeOfLevel", v.level_type)
        eccodes.codes_set(h, "level", ch.grib_level)
        if v.accumulation_hours:
            eccodes.codes_set(h, "stepRange", f"0-{v.accumulation_hours}")
        else:
            eccodes.codes_set(h, "step", 6)
        eccodes.codes_set(h, "bitsPerValue", 16)
        eccodes.codes_set_values(h, np.linspace(v.valid_min if np.isfinite(v.valid_min) else 0, 100.0,
                                                GRID.n_lat * GRID.n_lon))
        with open(path, "wb") as f:
            eccodes.codes_write(h, f)
        assert eccodes.codes_get(h, "paramId") == v.param_id, (ch.name, eccodes.codes_get(h, "paramId"))
        assert eccodes.codes_get(h, "shortName") == v.ecmwf_short_name
    finally:
        eccodes.codes_release(h)


# One channel per variable (a pressure level for the upper-air families).
CHANNELS = [c for c in PRODUCTION.output_channels if not c.variable.is_upper_air or c.level == 850]


@pytest.mark.parametrize("ch", CHANNELS, ids=lambda c: c.name)
def test_catalog_grib_keys_round_trip_through_cfgrib(tmp_path: Path, ch: Channel) -> None:
    path = tmp_path / f"{ch.name}.grib2"
    _write_field(path, ch)
    ds = xr.open_dataset(path, engine="cfgrib", backend_kwargs={"indexpath": ""})
    assert len(ds.data_vars) == 1
    da = next(iter(ds.data_vars.values()))
    v = ch.variable
    assert da.attrs["GRIB_shortName"] == v.ecmwf_short_name
    assert da.attrs["GRIB_paramId"] == v.param_id
    assert da.attrs["GRIB_typeOfLevel"] == v.level_type
    expected_units = v.units.replace("m2 s-2", "m**2 s**-2").replace("m s-1", "m s**-1").replace(
        "kg m-2", "kg m**-2")
    assert da.attrs["GRIB_units"] == expected_units
    if v.level_type in ("isobaricInhPa", "heightAboveGround"):
        assert float(ds[v.level_type]) == ch.grib_level
