"""Our GRIB2 encoder against ecCodes: identities, time keys, grid geometry, packing precision, bitmaps, CCSDS."""

from __future__ import annotations

from datetime import datetime

import eccodes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuxiops.catalog import PRODUCTION, Channel, parse_channel
from fuxiops.errors import DataError, GridError
from fuxiops.grids import get_grid
from fuxiops.pipeline.products.grib2_codec import (Identity, LatLonGeometry, encode_field, pack_simple,
                                                   repack_ccsds, resolve_centre)

GRID = get_grid("11.25deg")
GEOM = LatLonGeometry.from_coords(GRID.latitudes, GRID.longitudes)
REF = datetime(2023, 1, 1, 6)


def _decode(msg: bytes) -> tuple[dict[str, object], np.ndarray]:
    h = eccodes.codes_new_from_message(msg)
    try:
        keys = {k: eccodes.codes_get(h, k) for k in (
            "edition", "discipline", "parameterCategory", "parameterNumber", "paramId", "shortName", "typeOfLevel",
            "level", "stepRange", "startStep", "endStep", "dataDate", "dataTime", "validityDate", "validityTime",
            "centre", "subCentre", "generatingProcessIdentifier", "bitsPerValue", "packingType", "Ni", "Nj",
            "latitudeOfFirstGridPointInDegrees", "longitudeOfFirstGridPointInDegrees",
            "latitudeOfLastGridPointInDegrees", "longitudeOfLastGridPointInDegrees",
            "iDirectionIncrementInDegrees", "jDirectionIncrementInDegrees", "jScansPositively", "gridType",
            "binaryScaleFactor", "bitmapPresent", "numberOfMissing", "units", "totalLength")}
        keys["stepType"] = eccodes.codes_get(h, "stepType")
        if keys["stepType"] != "instant":
            keys["typeOfStatisticalProcessing"] = eccodes.codes_get(h, "typeOfStatisticalProcessing")
        eccodes.codes_set(h, "missingValue", 1e20)
        values = eccodes.codes_get_values(h)
        return keys, np.where(values == 1e20, np.nan, values).reshape(keys["Nj"], keys["Ni"])  # type: ignore[arg-type]
    finally:
        eccodes.codes_release(h)


def _field(ch: Channel, seed: int = 0) -> np.ndarray:
    v = ch.variable
    lo = max(v.valid_min, -1e5)
    hi = min(v.valid_max, 1e5)
    rng = np.random.default_rng(seed)
    return rng.uniform(lo + 0.25 * (hi - lo), lo + 0.75 * (hi - lo), GRID.shape).astype(np.float32)


@pytest.mark.parametrize("ch", PRODUCTION.output_channels, ids=lambda c: c.name)
def test_every_channel_has_its_identity_in_ecCodes(ch: Channel) -> None:
    step = 12
    x = _field(ch)
    keys, y = _decode(encode_field(x, ch, geometry=GEOM, reference_time=REF, step_hours=step))
    v = ch.variable
    assert keys["edition"] == 2 and keys["totalLength"] == len(encode_field(x, ch, geometry=GEOM, reference_time=REF, step_hours=step))
    assert (keys["discipline"], keys["parameterCategory"], keys["parameterNumber"]) == (
        v.discipline, v.parameter_category, v.parameter_number)
    assert keys["paramId"] == v.param_id and keys["shortName"] == v.ecmwf_short_name
    assert keys["typeOfLevel"] == v.level_type and keys["level"] == ch.grib_level
    assert keys["dataDate"] == 20230101 and keys["dataTime"] == 600
    assert keys["validityDate"] == 20230101 and keys["validityTime"] == 1800
    if v.accumulation_hours:
        assert keys["stepRange"] == "6-12" and keys["stepType"] == "accum"
        assert keys["typeOfStatisticalProcessing"] == 1
        assert (keys["startStep"], keys["endStep"]) == (6, 12)
    else:
        assert keys["stepRange"] == "12" and keys["stepType"] == "instant"
    assert keys["units"].replace("**", "").replace("-", "") == v.units.replace("-", "").replace(" ", " ")
    tol = 2.0 ** keys["binaryScaleFactor"] / 2 * (1 + 1e-6) + np.abs(x).max() * 1e-7  # type: ignore[operator]
    np.testing.assert_allclose(y, x, rtol=0, atol=tol)


def test_grid_geometry_of_a_global_grid() -> None:
    keys, _ = _decode(encode_field(_field(parse_channel("t2m")), parse_channel("t2m"), geometry=GEOM,
                                   reference_time=REF, step_hours=0))
    assert keys["gridType"] == "regular_ll"
    assert (keys["Ni"], keys["Nj"]) == (32, 17)
    assert keys["latitudeOfFirstGridPointInDegrees"] == 90.0 and keys["latitudeOfLastGridPointInDegrees"] == -90.0
    assert keys["longitudeOfFirstGridPointInDegrees"] == 0.0
    assert keys["longitudeOfLastGridPointInDegrees"] == pytest.approx(348.75)
    assert keys["iDirectionIncrementInDegrees"] == 11.25 and keys["jDirectionIncrementInDegrees"] == 11.25
    assert keys["jScansPositively"] == 0


def test_regional_south_to_north_subdomain_with_negative_coordinates() -> None:
    lat = np.arange(-40.0, 10.01, 0.25)  # ascending: scans +j
    lon = np.arange(-10.0, 2.01, 0.25)
    geom = LatLonGeometry.from_coords(lat, lon)
    x = np.add.outer(lat, lon).astype(np.float32) + 280.0
    keys, y = _decode(encode_field(x, parse_channel("t2m"), geometry=geom, reference_time=REF, step_hours=0))
    assert keys["jScansPositively"] == 1
    assert keys["latitudeOfFirstGridPointInDegrees"] == -40.0 and keys["latitudeOfLastGridPointInDegrees"] == 10.0
    assert keys["longitudeOfFirstGridPointInDegrees"] == 350.0 and keys["longitudeOfLastGridPointInDegrees"] == 2.0
    assert (keys["Ni"], keys["Nj"]) == (lon.size, lat.size)
    np.testing.assert_allclose(y, x, atol=2.0 ** keys["binaryScaleFactor"] / 2 + 1e-4)  # type: ignore[operator]


@pytest.mark.parametrize("bits", [8, 12, 16, 24])
def test_packing_precision_follows_bits(bits: int) -> None:
    ch = parse_channel("z500")
    x = _field(ch, seed=bits)
    keys, y = _decode(encode_field(x, ch, geometry=GEOM, reference_time=REF, step_hours=6, bits_per_value=bits))
    assert keys["bitsPerValue"] == bits and keys["packingType"] == "grid_simple"
    step = 2.0 ** keys["binaryScaleFactor"]  # type: ignore[operator]
    assert step <= (x.max() - x.min()) / (2 ** bits - 1) * 2 * (1 + 1e-9)
    np.testing.assert_allclose(y, x, rtol=0, atol=step / 2 + np.abs(x).max() * 1e-7)


def test_missing_values_become_a_bitmap() -> None:
    ch = parse_channel("msl")
    x = _field(ch)
    x[3, 4:9] = np.nan
    x[-1, :] = np.nan
    keys, y = _decode(encode_field(x, ch, geometry=GEOM, reference_time=REF, step_hours=6))
    assert keys["bitmapPresent"] == 1 and keys["numberOfMissing"] == 5 + GRID.n_lon
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x))
    ok = ~np.isnan(x)
    np.testing.assert_allclose(y[ok], x[ok], atol=2.0 ** keys["binaryScaleFactor"] / 2 + 0.02)  # type: ignore


def test_constant_field_packs_to_zero_bits() -> None:
    ch = parse_channel("tp6")
    x = np.zeros(GRID.shape, dtype=np.float32)
    keys, y = _decode(encode_field(x, ch, geometry=GEOM, reference_time=REF, step_hours=6))
    assert keys["bitsPerValue"] == 0
    np.testing.assert_array_equal(y, 0.0)


def test_ccsds_repacking_keeps_values() -> None:
    ch = parse_channel("t850")
    x = _field(ch)
    msg = encode_field(x, ch, geometry=GEOM, reference_time=REF, step_hours=6)
    keys, y = _decode(repack_ccsds(msg))
    assert keys["packingType"] == "grid_ccsds" and keys["paramId"] == 130
    np.testing.assert_allclose(y, x, atol=2.0 ** keys["binaryScaleFactor"] / 2 + 1e-3)  # type: ignore[operator]


def test_identity_is_configurable() -> None:
    ident = Identity(centre=resolve_centre("egrr"), subcentre=3, generating_process=42)
    keys, _ = _decode(encode_field(_field(parse_channel("u10")), parse_channel("u10"), geometry=GEOM,
                                   reference_time=REF, step_hours=6, identity=ident))
    assert keys["centre"] == "egrr" and keys["subCentre"] == 3 and keys["generatingProcessIdentifier"] == 42
    assert resolve_centre(98) == 98 and resolve_centre("7") == 7


def test_bad_inputs_are_named() -> None:
    with pytest.raises(DataError, match="centre"):
        resolve_centre("nowhere-centre")
    with pytest.raises(DataError, match="tp6"):
        encode_field(np.zeros(GRID.shape, np.float32), parse_channel("tp6"), geometry=GEOM, reference_time=REF,
                     step_hours=0)
    with pytest.raises(GridError, match="regularly spaced"):
        LatLonGeometry.from_coords(np.array([0.0, 1.0, 3.0]), np.arange(4.0))
    with pytest.raises(GridError, match="grid is"):
        encode_field(np.zeros((3, 3), np.float32), parse_channel("t2m"), geometry=GEOM, reference_time=REF,
                     step_hours=0)


@settings(max_examples=40, deadline=None)
@given(offset=st.floats(-1e5, 1e5), scale=st.floats(1e-3, 1e4), bits=st.sampled_from([8, 10, 16, 24]),
       seed=st.integers(0, 2 ** 16))
def test_simple_packing_error_is_at_most_half_a_step(offset: float, scale: float, bits: int, seed: int) -> None:
    x = (offset + scale * np.random.default_rng(seed).standard_normal(200)).astype(np.float32)
    p = pack_simple(x, bits)
    # Decode exactly as the standard says: Y = R + X * 2^E.
    if p.nbits == 0:
        y = np.full_like(x, p.reference, dtype=np.float64)
    else:
        bits_arr = np.unpackbits(np.frombuffer(p.data, np.uint8))[: x.size * bits].reshape(-1, bits)
        ints = bits_arr.astype(np.uint64) @ (1 << np.arange(bits - 1, -1, -1, dtype=np.uint64))
        y = p.reference + ints * 2.0 ** p.binary_scale
    assert np.all(np.abs(y - x) <= 2.0 ** p.binary_scale / 2 + np.abs(x) * 1e-7 + 1e-30)
    assert p.reference <= x.min()
