"""OGC API - EDR: metadata, the four queries, CoverageJSON/GeoJSON shapes and values, bad input."""

from __future__ import annotations

import numpy as np
import pytest

PUBLISHED, DEGRADED, FAILED = "2023010100", "2023010106", "2023010112"
SL = "/edr/collections/single-level"
PL = "/edr/collections/pressure-level"


def test_landing_conformance_collections(client) -> None:
    assert any(link["rel"] == "conformance" for link in client.get("/edr").json()["links"])
    conf = client.get("/edr/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-edr-1/1.1/conf/covjson" in conf
    cols = client.get("/edr/collections").json()["collections"]
    assert [c["id"] for c in cols] == ["single-level", "pressure-level"]
    pl = client.get(PL).json()
    assert pl["extent"]["vertical"]["values"] == ["500", "850"]
    assert set(pl["parameter_names"]) >= {"temperature", "geopotential_height", "wind_speed", "wind_direction"}
    assert set(pl["data_queries"]) == {"position", "area", "cube", "radius"}
    sl = client.get(SL).json()
    assert "vertical" not in sl["extent"]
    assert sl["parameter_names"]["temperature_2m"]["unit"]["symbol"]["value"] == "Cel"
    # latest = the degraded run (newest servable): 9 steps
    assert len(sl["extent"]["temporal"]["values"]) == 9 and sl["run"]["status"] == "degraded"
    assert client.get("/edr/collections/nope").status_code == 404


def test_instances_are_the_servable_runs(client) -> None:
    inst = client.get(f"{SL}/instances").json()["instances"]
    assert [i["id"] for i in inst] == [DEGRADED, PUBLISHED]  # the failed run is not served
    one = client.get(f"{SL}/instances/{PUBLISHED}").json()
    assert len(one["extent"]["temporal"]["values"]) == 41


def test_position_matches_forecast_endpoint(client) -> None:
    cov = client.get(f"{SL}/instances/{PUBLISHED}/position", params={
        "coords": "POINT(13.41 52.52)", "parameter-name": "temperature_2m,wind_speed_10m"})
    assert cov.status_code == 200 and cov.headers["content-type"].startswith("application/prs.coverage+json")
    c = cov.json()
    assert c["type"] == "Coverage" and c["domain"]["domainType"] == "PointSeries"
    om = client.get("/v1/forecast", params={"latitude": 52.52, "longitude": 13.41, "run": PUBLISHED,
                                            "hourly": "temperature_2m,wind_speed_10m", "wind_speed_unit": "ms",
                                            "forecast_days": 16}).json()
    assert c["domain"]["axes"]["x"]["values"] == [om["longitude"]]
    assert len(c["domain"]["axes"]["t"]["values"]) == 41
    np.testing.assert_allclose(c["ranges"]["temperature_2m"]["values"], om["hourly"]["temperature_2m"], atol=0.006)
    np.testing.assert_allclose(c["ranges"]["wind_speed_10m"]["values"], om["hourly"]["wind_speed_10m"], atol=0.006)
    assert c["run"]["id"] == PUBLISHED


def test_position_levels_times_and_multipoint(client) -> None:
    c = client.get(f"{PL}/instances/{PUBLISHED}/position", params={
        "coords": "MULTIPOINT((0 0),(100 -30))", "parameter-name": "temperature", "z": "500,850",
        "datetime": "2023-01-01T06:00:00Z/2023-01-01T18:00:00Z"}).json()
    assert c["type"] == "CoverageCollection" and len(c["coverages"]) == 2
    r = c["coverages"][0]["ranges"]["temperature"]
    assert r["axisNames"] == ["t", "z", "y", "x"] and r["shape"] == [3, 2, 1, 1]
    v = np.array(r["values"]).reshape(3, 2)
    assert np.all(v[:, 0] < v[:, 1])  # 500 hPa colder than 850 hPa
    one = client.get(f"{PL}/instances/{PUBLISHED}/position", params={
        "coords": "POINT(0 0)", "parameter-name": "temperature", "z": "850",
        "datetime": "2023-01-01T06:00:00Z"}).json()
    assert one["domain"]["domainType"] == "PointSeries"
    assert one["ranges"]["temperature"]["values"] == pytest.approx([v[0, 1]], abs=1e-3)
    assert one["domain"]["axes"]["z"]["values"] == [850]


def test_area_polygon_masks_outside_cells(client) -> None:
    c = client.get(f"{SL}/instances/{PUBLISHED}/area", params={
        "coords": "POLYGON((0 0, 30 0, 0 30, 0 0))", "parameter-name": "pressure_msl",
        "datetime": "2023-01-01T00:00:00Z"}).json()
    assert c["domain"]["domainType"] == "Grid"
    xs, ys = c["domain"]["axes"]["x"]["values"], c["domain"]["axes"]["y"]["values"]
    vals = np.array(c["ranges"]["pressure_msl"]["values"], dtype=float).reshape(1, len(ys), len(xs))
    for a, y in enumerate(ys):
        for b, x in enumerate(xs):
            inside = x > 0 and y > 0 and x + y < 30
            if inside:
                assert np.isfinite(vals[0, a, b])
            elif x + y > 30.01:
                assert np.isnan(vals[0, a, b])


def test_cube_across_the_antimeridian_and_geojson(client) -> None:
    c = client.get(f"{SL}/cube", params={"bbox": "170,-10,190,10", "parameter-name": "temperature_2m",
                                         "datetime": "2023-01-01T06:00:00Z"}).json()
    xs = c["domain"]["axes"]["x"]["values"]
    assert xs == sorted(xs) and xs[0] > 170 and xs[-1] < 190 and any(x > 180 for x in xs)
    g = client.get(f"{SL}/cube", params={"bbox": "0,0,10,10", "parameter-name": "temperature_2m", "f": "GeoJSON"})
    assert g.headers["content-type"].startswith("application/geo+json")
    feats = g.json()["features"]
    assert feats and feats[0]["geometry"]["type"] == "Point" and len(feats[0]["properties"]["temperature_2m"]) == 9


def test_radius_query(client) -> None:
    c = client.get(f"{SL}/radius", params={"coords": "POINT(0 0)", "within": 700, "within-units": "km",
                                           "parameter-name": "pressure_msl", "datetime": "2023-01-01T06:00:00Z"})
    assert c.status_code == 200, c.text
    vals = np.array(c.json()["ranges"]["pressure_msl"]["values"], dtype=float)
    assert np.isfinite(vals).sum() == 5  # the centre and its 4 neighbours at 5.625 deg (~625 km)
    mi = client.get(f"{SL}/radius", params={"coords": "POINT(0 0)", "within": 435, "within-units": "mi",
                                            "parameter-name": "pressure_msl", "datetime": "2023-01-01T06:00:00Z"})
    assert np.isfinite(np.array(mi.json()["ranges"]["pressure_msl"]["values"], dtype=float)).sum() == 5


@pytest.mark.parametrize("path,params,parameter", [
    (f"{SL}/position", {"coords": "POINT(0 95)"}, "coords"),
    (f"{SL}/position", {"coords": "LINESTRING(0 0, 1 1)"}, "coords"),
    (f"{SL}/position", {"coords": "POINT(0 0)", "parameter-name": "snow"}, "parameter-name"),
    (f"{SL}/position", {"coords": "POINT(0 0)", "datetime": "yesterday"}, "datetime"),
    (f"{SL}/position", {"coords": "POINT(0 0)", "datetime": "2023-01-01T09:00:00Z"}, "datetime"),
    (f"{SL}/position", {"coords": "POINT(0 0)", "z": "850"}, "z"),
    (f"{PL}/position", {"coords": "POINT(0 0)", "z": "700"}, "z"),
    (f"{SL}/area", {"coords": "POLYGON((0 0, 1 0, 1 1))"}, "coords"),
    (f"{SL}/area", {"coords": "POLYGON((0.1 0.1, 0.2 0.1, 0.2 0.2, 0.1 0.1))"}, "coords"),
    (f"{SL}/cube", {"bbox": "10,20,5"}, "bbox"),
    (f"{SL}/radius", {"coords": "POINT(0 0)", "within": 100, "within-units": "parsec"}, "within-units"),
    (f"{SL}/position", {"coords": "POINT(0 0)", "f": "xml"}, "f"),
])
def test_bad_edr_input(client, path: str, params: dict, parameter: str) -> None:
    r = client.get(path, params=params)
    assert r.status_code == 400, r.text
    assert r.json()["parameter"] == parameter


def test_oversized_area_is_refused(make_client) -> None:
    c = make_client(max_values=1000)
    r = c.get(f"{SL}/cube", params={"bbox": "-180,-90,180,90"})
    assert r.status_code == 400
    body = r.json()
    assert body["parameter"] == "bbox" and "at most 1000" in body["reason"]


def test_global_cube_reads_fields_and_matches_store(client, products_template) -> None:
    import xarray as xr

    c = client.get(f"{SL}/instances/{PUBLISHED}/cube", params={
        "bbox": "0,-90,359,90", "parameter-name": "pressure_msl", "datetime": "2023-01-02T06:00:00Z"}).json()
    ds = xr.open_zarr(products_template / PUBLISHED / "forecast.zarr")
    want = ds.msl.sel(step=30).values / 100.0  # step in hours, 2023-01-02T06 = +30 h
    got = np.array(c["ranges"]["pressure_msl"]["values"], dtype=float).reshape(want.shape)
    np.testing.assert_allclose(got, want, atol=0.002)
