"""Serving a run written by the real publisher (fuxiops.pipeline.products), not by our synthetic writer."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

products_pkg = pytest.importorskip("fuxiops.pipeline.products")


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fuxiops.catalog import TESTBED
    from fuxiops.grids import get_grid
    from fuxiops.pipeline.products import publish, synthetic

    out = tmp_path_factory.mktemp("published")
    run = synthetic.run_meta(get_grid("5.625deg"), TESTBED, datetime(2023, 1, 1, 6), n_steps=4)
    publish(synthetic.forecast(run), run, out, formats=("grib2", "netcdf", "zarr"))
    return out


def test_serves_a_run_of_the_publisher(published: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from fuxiops.config import load_config
    from fuxiops.services.api.app import create_app
    from fuxiops.services.api.settings import ServiceSettings, Settings

    cfg = load_config(home=str(tmp_path), data={"products": str(published)})
    app = create_app(Settings(cfg, ServiceSettings(cache_dir=str(tmp_path / "cache"), prebuild_latest=False)))
    with TestClient(app) as c:
        runs = c.get("/runs").json()
        assert runs["latest"] == "2023010106"
        entry = runs["runs"][0]
        assert entry["servable"] and entry["status"] == "complete"
        files = {f["name"]: f for f in entry["files"]}
        assert files["forecast.zarr"]["href"] is None
        grib = next(n for n in files if n.endswith(".grib2"))
        r = c.get(f"/runs/2023010106/files/{grib}")
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == files[grib]["sha256"]
        assert r.headers["etag"] == f'"{files[grib]["sha256"]}"'

        fc = c.get("/v1/forecast", params={"latitude": 45, "longitude": 7, "wind_speed_unit": "ms",
                                            "hourly": "temperature_2m,wind_speed_10m,geopotential_height_500hPa"})
        assert fc.status_code == 200, fc.text
        body = fc.json()
        assert body["run"]["id"] == "2023010106" and body["run"]["status"] == "complete"
        assert body["run"]["model"] == "synthetic"
        ds = xr.open_zarr(published / "2023010106" / "forecast.zarr")
        p = ds.sel(latitude=body["latitude"], longitude=body["longitude"] % 360).load()
        assert body["hourly"]["time"][0] == "2023-01-01T06:00" and len(body["hourly"]["time"]) == 5
        np.testing.assert_allclose(body["hourly"]["temperature_2m"], p.t2m.values - 273.15, atol=0.006)
        np.testing.assert_allclose(body["hourly"]["wind_speed_10m"], np.hypot(p.u10.values, p.v10.values),
                                   atol=0.006)
        np.testing.assert_allclose(body["hourly"]["geopotential_height_500hPa"],
                                   p.z.sel(level=500).values / 9.80665, atol=0.01)
        pos = c.get("/edr/collections/pressure-level/position",
                    params={"coords": "POINT(7 45)", "parameter-name": "temperature", "z": "850"})
        assert pos.status_code == 200
        np.testing.assert_allclose(pos.json()["ranges"]["temperature"]["values"],
                                   p.t.sel(level=850).values - 273.15, atol=0.006)
        assert c.get("/maps/latest/temperature_850hPa/12.png").status_code == 200
