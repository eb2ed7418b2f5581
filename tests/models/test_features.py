"""Static and clock features: real land-sea mask, encodings, clock phases."""

from __future__ import annotations

import numpy as np
import pytest

from fuxiops.errors import DataError
from fuxiops.models.features import clock_features, static_fields


def test_static_fields_are_physical(grid5) -> None:
    s = static_fields(grid5)
    assert s.planes.shape == (6, *grid5.shape) and s.planes.dtype == np.float32
    lsm = s.planes[0]
    land = float((lsm * grid5.lat_weights[:, None]).mean())
    assert 0.2 < land < 0.4  # about 29% of the Earth's surface is land
    assert lsm[-1].all() and not lsm[grid5.n_lat // 2].all()  # Antarctica; the equator is not all land
    np.testing.assert_allclose(s.planes[2][:, 0], np.sin(np.deg2rad(grid5.latitudes)), atol=1e-6)
    assert "flat" in s.source and not s.planes[1].any()
    with pytest.raises(DataError, match="orography has shape"):
        static_fields(grid5, orography=np.zeros((3, 3)))


def test_clock_features() -> None:
    a = clock_features("2023-01-01T00")
    np.testing.assert_allclose(a, [0.0, 1.0, 0.0, 1.0], atol=1e-6)
    b = clock_features("2023-01-01T06")
    np.testing.assert_allclose(b[:2], [1.0, 0.0], atol=1e-6)
    c = clock_features("2023-07-02T12")
    assert c[3] < -0.99  # mid-year: day-of-year phase near pi
    assert np.allclose(np.hypot(c[0], c[1]), 1.0) and np.allclose(np.hypot(c[2], c[3]), 1.0)
