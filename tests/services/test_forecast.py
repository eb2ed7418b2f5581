"""/v1/forecast: values against an independent xarray read, units, derived winds, time zones, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from fuxiops.catalog import G0
from fuxiops.services.api.variables import wind_direction

PUBLISHED, DEGRADED = "2023010100", "2023010106"  # the runs of conftest.products_template

ALL = ("temperature_2m,wind_speed_10m,wind_direction_10m,pressure_msl,geopotential_height_500hPa,"
       "temperature_850hPa,wind_speed_850hPa,wind_direction_850hPa")


def _truth(products: Path, run_id: str, lat: float, lon: float) -> xr.Dataset:
    ds = xr.open_zarr(products / run_id / "forecast.zarr")
    return ds.sel(latitude=lat, longitude=lon % 360, method="nearest").load()


def test_point_values_match_store(client, products: Path) -> None:
    r = client.get("/v1/forecast", params={"latitude": 52.52, "longitude": 13.41, "hourly": ALL,
                                           "run": PUBLISHED, "wind_speed_unit": "ms", "forecast_days": 16})
    assert r.status_code == 200, r.text
    body = r.json()
    p = _truth(products, PUBLISHED, 52.52, 13.41)
    assert body["latitude"] == pytest.approx(float(p.latitude))
    assert body["longitude"] == pytest.approx(float(p.longitude))
    h = body["hourly"]
    assert len(h["time"]) == 41
    np.testing.assert_allclose(h["temperature_2m"], p.t2m.values - 273.15, atol=0.006)
    np.testing.assert_allclose(h["pressure_msl"], p.msl.values / 100.0, atol=0.006)
    np.testing.assert_allclose(h["geopotential_height_500hPa"], p.z.sel(level=500).values / G0, atol=0.01)
    np.testing.assert_allclose(h["temperature_850hPa"], p.t.sel(level=850).values - 273.15, atol=0.006)
    u, v = p.u10.values, p.v10.values
    np.testing.assert_allclose(h["wind_speed_10m"], np.hypot(u, v), atol=0.006)
    expected_dir = (270.0 - np.degrees(np.arctan2(v, u))) % 360.0
    diff = (np.array(h["wind_direction_10m"]) - expected_dir + 180) % 360 - 180
    assert np.abs(diff).max() < 0.01
    assert body["hourly_units"]["wind_speed_10m"] == "m/s"
    assert body["hourly_units"]["temperature_2m"] == "°C"
    assert body["run"] == {"id": PUBLISHED, "cycle_time": "2023-01-01T00:00:00Z", "model": "fuxi-tiny-synthetic",
                           "status": "published"}
    for key in ("generationtime_ms", "utc_offset_seconds", "timezone", "timezone_abbreviation", "elevation"):
        assert key in body


def test_wind_direction_is_where_the_wind_comes_from() -> None:
    u = np.array([5.0, -5.0, 0.0, 0.0, 3.0, 0.0], dtype=np.float32)
    v = np.array([0.0, 0.0, 5.0, -5.0, 3.0, 0.0], dtype=np.float32)
    # westerly, easterly, southerly, northerly, south-westerly, calm
    np.testing.assert_allclose(wind_direction(u, v), [270, 90, 180, 0, 225, 0], atol=1e-4)


def test_units_conversions(client) -> None:
    base = {"latitude": -33.9, "longitude": 18.4, "hourly": "temperature_2m,wind_speed_10m", "run": PUBLISHED}
    a = client.get("/v1/forecast", params=base).json()
    b = client.get("/v1/forecast", params={**base, "temperature_unit": "fahrenheit", "wind_speed_unit": "kn"}).json()
    c = client.get("/v1/forecast", params={**base, "wind_speed_unit": "mph"}).json()
    assert a["hourly_units"]["wind_speed_10m"] == "km/h" and b["hourly_units"]["wind_speed_10m"] == "kn"
    assert c["hourly_units"]["wind_speed_10m"] == "mp/h" and b["hourly_units"]["temperature_2m"] == "°F"
    ta, tb = np.array(a["hourly"]["temperature_2m"]), np.array(b["hourly"]["temperature_2m"])
    np.testing.assert_allclose(tb, ta * 1.8 + 32, atol=0.03)
    kmh, kn, mph = (np.array(x["hourly"]["wind_speed_10m"]) for x in (a, b, c))
    np.testing.assert_allclose(kn, kmh / 1.852, atol=0.02)
    np.testing.assert_allclose(mph, kmh / 1.609344, atol=0.02)


def test_six_hourly_not_interpolated_and_forecast_days(client) -> None:
    r = client.get("/v1/forecast", params={"latitude": 0, "longitude": 0, "hourly": "temperature_2m",
                                           "forecast_days": 2, "run": PUBLISHED}).json()
    times = r["hourly"]["time"]
    assert times == ["2023-01-01T00:00", "2023-01-01T06:00", "2023-01-01T12:00", "2023-01-01T18:00",
                     "2023-01-02T00:00", "2023-01-02T06:00", "2023-01-02T12:00", "2023-01-02T18:00"]
    assert len(r["hourly"]["temperature_2m"]) == 8
    d7 = client.get("/v1/forecast", params={"latitude": 0, "longitude": 0, "hourly": "temperature_2m",
                                            "run": PUBLISHED}).json()
    assert len(d7["hourly"]["time"]) == 28  # Open-Meteo's default: 7 days


def test_timezones_and_unixtime(client) -> None:
    base = {"latitude": 40.7, "longitude": -74.0, "hourly": "temperature_2m", "run": PUBLISHED}
    ny = client.get("/v1/forecast", params={**base, "timezone": "America/New_York"}).json()
    assert ny["utc_offset_seconds"] == -5 * 3600 and ny["timezone_abbreviation"] == "EST"
    assert ny["hourly"]["time"][0] == "2022-12-31T19:00"
    auto = client.get("/v1/forecast", params={**base, "timezone": "auto"}).json()
    assert auto["timezone"] == "America/New_York"
    ocean = client.get("/v1/forecast", params={"latitude": -40, "longitude": -100, "timezone": "auto",
                                               "hourly": "temperature_2m", "run": PUBLISHED}).json()
    assert ocean["timezone"].startswith("Etc/GMT") and ocean["utc_offset_seconds"] == -7 * 3600
    unix = client.get("/v1/forecast", params={**base, "timeformat": "unixtime"}).json()
    assert unix["hourly"]["time"][:2] == [1672531200, 1672531200 + 6 * 3600]
    assert unix["hourly_units"]["time"] == "unixtime"


def test_several_locations_and_longitude_wrap(client) -> None:
    r = client.get("/v1/forecast", params={"latitude": "10,10,-20", "longitude": "-180,180,200",
                                           "hourly": "pressure_msl", "run": PUBLISHED})
    assert r.status_code == 200
    body = r.json()
    assert isinstance(body, list) and len(body) == 3
    assert body[0]["hourly"]["pressure_msl"] == body[1]["hourly"]["pressure_msl"]
    assert body[2]["longitude"] == pytest.approx(-160.3125, abs=3)


def test_latest_is_the_newest_servable_run(client) -> None:
    r = client.get("/v1/forecast", params={"latitude": 1, "longitude": 2, "hourly": "temperature_2m"}).json()
    assert r["run"]["id"] == DEGRADED and r["run"]["status"] == "degraded"
    assert r["run"]["model"] == "fuxi-tiny-degraded"
    assert len(r["hourly"]["time"]) == 9


@pytest.mark.parametrize("params,status,parameter", [
    ({"latitude": 91, "longitude": 0}, 400, "latitude"),
    ({"latitude": "a", "longitude": 0}, 400, "latitude"),
    ({"latitude": 10, "longitude": 400}, 400, "longitude"),
    ({"latitude": "1,2", "longitude": "3"}, 400, "longitude"),
    ({"latitude": 1, "longitude": 2, "hourly": "snowfall"}, 400, "hourly"),
    ({"latitude": 1, "longitude": 2, "timezone": "Mars/Olympus"}, 400, "timezone"),
    ({"latitude": 1, "longitude": 2, "forecast_days": 30}, 422, "forecast_days"),
    ({"latitude": 1, "longitude": 2, "temperature_unit": "kelvin"}, 422, "temperature_unit"),
    ({"latitude": 1, "longitude": 2, "run": "yesterday"}, 422, "run"),
    ({"latitude": 1, "longitude": 2, "daily": "temperature_2m_max"}, 400, "daily"),
    ({"longitude": 2}, 422, "latitude"),
])
def test_bad_input_names_the_parameter(client, params: dict, status: int, parameter: str) -> None:
    r = client.get("/v1/forecast", params=params)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] is True and body["parameter"] == parameter
    assert parameter in body["reason"]
    if parameter == "hourly":
        assert "temperature_2m" in body["allowed"] and "wind_speed_10m" in body["allowed"]


def test_unknown_run_is_404_with_the_available_ones(client) -> None:
    r = client.get("/v1/forecast", params={"latitude": 1, "longitude": 2, "run": "2020010100"})
    assert r.status_code == 404
    assert PUBLISHED in r.json()["allowed"]


def test_failed_run_is_listed_but_not_served(client) -> None:
    r = client.get("/v1/forecast", params={"latitude": 1, "longitude": 2, "run": "2023010112"})
    assert r.status_code == 409 and "failed" in r.json()["reason"]
    assert r.json()["allowed"] == [DEGRADED, PUBLISHED]
    assert client.get("/maps/2023010112/temperature_2m/0.png").status_code == 409
    assert client.get("/runs/2023010112").json()["status"] == "failed"


def test_store_with_one_field_per_chunk(tmp_path: Path) -> None:
    """The point index also builds from stores chunked one field per chunk (not the products layout)."""
    from fuxiops.services.api.store.catalog import RunCatalog
    from fuxiops.services.api.store.runs import RunRepository
    from fuxiops.services.api.synthetic import write_run

    p = write_run(tmp_path / "products", "2023020100", grid="11.25deg", steps=5, layout="fields",
                  product_files=False)
    run = RunRepository(RunCatalog(tmp_path / "products"), tmp_path / "cache").open(None)
    assert run.store.chunking() == (False, 17)
    ds = xr.open_zarr(p / "forecast.zarr")
    for i, j in [(0, 0), (8, 20), (16, 31)]:
        np.testing.assert_array_equal(run.index().point(i, j)[run.channel_index["u850"]],
                                      ds.u.sel(level=850).isel(latitude=i, longitude=j).values)
