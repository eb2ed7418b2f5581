"""Real ERA5 fields re-encoded through our GRIB2 encoder: values within packing precision, same grid.

``era5-2mt-2019-03-uk.grib`` is a regional 0.25-degree subdomain (50-58N, 10W-2E)
and ``era5-levels-members.grib`` a global 3-degree grid, both GRIB1. The
geometry of our GRIB2 messages must equal what ecCodes itself produces when it
converts the originals to edition 2, point for point.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Iterator

import eccodes
import numpy as np
import pytest

from fuxiops.catalog import parse_channel
from fuxiops.pipeline.products.grib2_codec import LatLonGeometry, encode_field

GEOMETRY_KEYS = ("gridType", "Ni", "Nj", "latitudeOfFirstGridPointInDegrees", "longitudeOfFirstGridPointInDegrees",
                 "latitudeOfLastGridPointInDegrees", "longitudeOfLastGridPointInDegrees",
                 "iDirectionIncrementInDegrees", "jDirectionIncrementInDegrees", "iScansNegatively",
                 "jScansPositively", "jPointsAreConsecutive", "numberOfDataPoints")
_CHANNEL = {"2t": "t2m", "z": "z", "t": "t"}


def _messages(path: Path, limit: int) -> Iterator[int]:
    with open(path, "rb") as fh:
        for _ in range(limit):
            h = eccodes.codes_grib_new_from_file(fh)
            if h is None:
                return
            try:
                yield h
            finally:
                eccodes.codes_release(h)


def _geometry(h: int) -> dict[str, object]:
    return {k: eccodes.codes_get(h, k) for k in GEOMETRY_KEYS}


def _reencode(h: int) -> tuple[bytes, np.ndarray]:
    ni, nj = eccodes.codes_get(h, "Ni"), eccodes.codes_get(h, "Nj")
    values = eccodes.codes_get_values(h).reshape(nj, ni).astype(np.float32)
    lat0 = eccodes.codes_get(h, "latitudeOfFirstGridPointInDegrees")
    dj = eccodes.codes_get(h, "jDirectionIncrementInDegrees")
    lats = lat0 + np.arange(nj) * (dj if eccodes.codes_get(h, "jScansPositively") else -dj)
    lons = eccodes.codes_get(h, "longitudeOfFirstGridPointInDegrees") + np.arange(ni) * eccodes.codes_get(
        h, "iDirectionIncrementInDegrees")
    short = eccodes.codes_get(h, "shortName")
    name = _CHANNEL[short] + (str(eccodes.codes_get(h, "level")) if short in ("z", "t") else "")
    d, t = eccodes.codes_get(h, "dataDate"), eccodes.codes_get(h, "dataTime")
    ref = datetime(d // 10000, d // 100 % 100, d % 100, t // 100, t % 100)
    msg = encode_field(values, parse_channel(name), geometry=LatLonGeometry.from_coords(lats, lons),
                       reference_time=ref, step_hours=int(eccodes.codes_get(h, "step")), bits_per_value=16)
    return msg, values


@pytest.mark.parametrize("fname, limit", [("era5-2mt-2019-03-uk.grib", 48), ("era5-levels-members.grib", 40)])
def test_real_fields_round_trip_with_identical_geometry(real_data: Path, fname: str, limit: int) -> None:
    n = 0
    for h in _messages(real_data / "grib" / fname, limit):
        msg, values = _reencode(h)
        ours = eccodes.codes_new_from_message(msg)
        ref2 = eccodes.codes_clone(h)
        try:
            eccodes.codes_set(ref2, "edition", 2)  # ecCodes' own GRIB1 -> GRIB2 conversion
            assert _geometry(ours) == _geometry(ref2)
            for key in ("latitudes", "longitudes"):
                np.testing.assert_allclose(eccodes.codes_get_array(ours, key), eccodes.codes_get_array(ref2, key),
                                           atol=1e-9)
            assert eccodes.codes_get(ours, "paramId") == eccodes.codes_get(h, "paramId")
            assert eccodes.codes_get(ours, "dataDate") == eccodes.codes_get(h, "dataDate")
            assert eccodes.codes_get(ours, "dataTime") == eccodes.codes_get(h, "dataTime")
            if eccodes.codes_get(h, "shortName") in ("z", "t"):
                assert eccodes.codes_get(ours, "level") == eccodes.codes_get(h, "level")
            got = eccodes.codes_get_values(ours).reshape(values.shape)
            half = 2.0 ** eccodes.codes_get(ours, "binaryScaleFactor") / 2
            orig_half = 2.0 ** eccodes.codes_get(h, "binaryScaleFactor") / 2
            np.testing.assert_allclose(got, values, rtol=0, atol=half * (1 + 1e-6) + np.abs(values).max() * 1e-7)
            # same bits as the original: our step is no coarser than ERA5's own packing
            assert half <= orig_half * 2
        finally:
            eccodes.codes_release(ours)
            eccodes.codes_release(ref2)
        n += 1
    assert n == limit
