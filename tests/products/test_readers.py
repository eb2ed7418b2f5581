"""Published products read back by the tools users have: cfgrib, earthkit-data, grib_ls/grib_compare,
cdo, the IOOS compliance checker (CF-1.10), xarray on NetCDF and on the Zarr serving store."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import eccodes
import numpy as np
import pytest
import xarray as xr

from fuxiops.catalog import PRODUCTION
from fuxiops.config import load_config
from fuxiops.pipeline.products import RunMeta, publish, synthetic
from fuxiops.pipeline.products.publish import PublishResult

from .conftest import run_tool, tool


def _truth(run: RunMeta) -> dict[int, xr.Dataset]:
    return {int(ds.step): ds for ds in synthetic.forecast(run, seed=1)}


def _half_step(msg_path: Path) -> dict[tuple[str, int], float]:
    """Per (shortName, level): half the quantisation step of each message in a GRIB file."""
    out = {}
    with open(msg_path, "rb") as fh:
        while (h := eccodes.codes_grib_new_from_file(fh)) is not None:
            key = (eccodes.codes_get(h, "shortName"), eccodes.codes_get(h, "level"))
            out[key] = 2.0 ** eccodes.codes_get(h, "binaryScaleFactor") / 2
            eccodes.codes_release(h)
    return out


def test_manifest_lists_every_file_with_size_and_sha256(published: PublishResult, run: RunMeta) -> None:
    root = published.path
    m = json.loads((root / "manifest.json").read_text())
    assert m["run_id"] == "2023010106" and m["cycle_time"] == "2023-01-01T06:00:00Z"
    assert m["status"] == "complete" and m["model"]["name"] == "synthetic"
    names = {f["name"] for f in m["files"]}
    on_disk = {p.name for p in root.iterdir()} - {"manifest.json"}
    assert names == on_disk
    for f in m["files"]:
        p = root / f["name"]
        if p.is_file():
            assert f["size"] == p.stat().st_size
            assert f["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    formats = {f["format"] for f in m["files"]}
    assert formats == {"grib2", "grib2-index", "netcdf", "zarr"}
    assert sum(f["format"] == "grib2" for f in m["files"]) == len(run.steps)
    # nothing temporary left next to the run
    assert [p.name for p in root.parent.iterdir()] == [run.run_id]


def test_grib_index_offsets_point_at_the_messages(published: PublishResult) -> None:
    path = published.path / "2023010106-12h.grib2"
    data = path.read_bytes()
    entries = [json.loads(line) for line in (published.path / "2023010106-12h.index").read_text().splitlines()]
    assert len(entries) == len(PRODUCTION.output_channels)
    assert entries[-1]["_offset"] + entries[-1]["_length"] == len(data)
    for e in entries:
        msg = data[e["_offset"]: e["_offset"] + e["_length"]]
        h = eccodes.codes_new_from_message(msg)
        try:
            assert eccodes.codes_get(h, "shortName") == e["param"]
            assert eccodes.codes_get(h, "stepRange") == e["step"]
            if "levelist" in e:
                assert str(eccodes.codes_get(h, "level")) == e["levelist"]
        finally:
            eccodes.codes_release(h)


@pytest.mark.parametrize("step", [0, 12])
def test_cfgrib_reads_names_levels_steps_units_and_values(published: PublishResult, run: RunMeta,
                                                          step: int) -> None:
    path = published.path / f"2023010106-{step}h.grib2"
    truth = _truth(run)[step]
    tol = _half_step(path)
    ds = xr.open_dataset(path, engine="cfgrib", backend_kwargs={
        "filter_by_keys": {"typeOfLevel": "isobaricInhPa"}, "indexpath": ""})
    assert sorted(ds.data_vars) == ["r", "t", "u", "v", "z"]
    assert [int(x) for x in ds.isobaricInhPa] == sorted(PRODUCTION.levels, reverse=True)
    assert ds.step.values / np.timedelta64(1, "h") == step
    assert ds.time.values == np.datetime64("2023-01-01T06:00")
    assert ds["t"].attrs["GRIB_units"] == "K" and ds["z"].attrs["GRIB_units"] == "m**2 s**-2"
    for name in ["z", "t", "u", "v", "r"]:
        for lev in PRODUCTION.levels:
            got = ds[name].sel(isobaricInhPa=lev).values
            want = truth[name].sel(level=lev).values
            np.testing.assert_allclose(got, want, rtol=0, atol=tol[(name, lev)] * 1.0001)
    for short, name, lev_type, level in [("2t", "t2m", "heightAboveGround", 2), ("msl", "msl", "meanSea", 0)]:
        sd = xr.open_dataset(path, engine="cfgrib", backend_kwargs={
            "filter_by_keys": {"shortName": short}, "indexpath": ""})
        da = next(iter(sd.data_vars.values()))
        assert da.attrs["GRIB_typeOfLevel"] == lev_type and da.attrs["GRIB_shortName"] == short
        np.testing.assert_allclose(da.values, truth[name].values, atol=tol[(short, level)] * 1.0001)


def test_cfgrib_reads_tp_as_6h_accumulation(published: PublishResult, run: RunMeta) -> None:
    path = published.path / "2023010106-12h.grib2"
    ds = xr.open_dataset(path, engine="cfgrib", backend_kwargs={"filter_by_keys": {"shortName": "tp"},
                                                                 "indexpath": ""})
    tp = ds["tp"]
    assert tp.attrs["GRIB_stepType"] == "accum" and tp.attrs["GRIB_units"] == "kg m**-2"
    assert ds.step.values / np.timedelta64(1, "h") == 12
    np.testing.assert_allclose(tp.values, _truth(run)[12]["tp6"].values, atol=_half_step(path)[("tp", 0)] * 1.0001)


def test_earthkit_data_reads_metadata_and_values(published: PublishResult, run: RunMeta) -> None:
    ekd = pytest.importorskip("earthkit.data")
    path = published.path / "2023010106-6h.grib2"
    fl = ekd.from_source("file", str(path)).to_fieldlist()
    assert len(fl) == len(PRODUCTION.output_channels)
    sel = fl.sel(**{"parameter.variable": "t", "vertical.level": 850})
    assert len(sel) == 1
    t850 = sel[0]
    assert t850.metadata("typeOfLevel") == "isobaricInhPa" and t850.metadata("units") == "K"
    assert t850.metadata("step") == 6 and t850.metadata("paramId") == 130
    assert t850.get("vertical.level_type") == "pressure"
    truth = _truth(run)[6]
    tol = _half_step(path)
    np.testing.assert_allclose(t850.to_numpy(), truth["t"].sel(level=850).values, atol=tol[("t", 850)] * 1.0001)
    u10 = fl.sel(**{"metadata.shortName": "10u"})[0]
    assert u10.metadata("level") == 10 and u10.metadata("typeOfLevel") == "heightAboveGround"
    tp = fl.sel(**{"metadata.shortName": "tp"})[0]
    assert tp.metadata("stepRange") == "0-6" and tp.metadata("units") == "kg m**-2"
    lats = t850.geography.distinct_latitudes()
    lons = t850.geography.distinct_longitudes()
    np.testing.assert_allclose(lats, run.grid.latitudes)
    np.testing.assert_allclose(lons, run.grid.longitudes)


def test_grib_ls_reads_every_file_without_warnings(published: PublishResult, run: RunMeta) -> None:
    grib_ls = tool("grib_ls")
    for step in run.steps:
        r = run_tool(grib_ls, "-p", "shortName,typeOfLevel,level,stepRange", published.path / f"2023010106-{step}h.grib2")
        assert r.returncode == 0 and r.stderr == "", r.stderr
        n = len(run.channels_at(step))
        assert f"{n} of {n} messages" in r.stdout
        assert "unknown" not in r.stdout


def test_grib_compare_finds_our_header_identical_to_ecCodes_repacking(published: PublishResult,
                                                                      tmp_path: Path) -> None:
    """ecCodes re-encodes each of our messages from their decoded values: no key may differ."""
    grib_compare = tool("grib_compare")
    src = published.path / "2023010106-12h.grib2"
    again = tmp_path / "again.grib2"
    with open(src, "rb") as fin, open(again, "wb") as fout:
        while (h := eccodes.codes_grib_new_from_file(fin)) is not None:
            c = eccodes.codes_clone(h)
            eccodes.codes_set_values(c, eccodes.codes_get_values(h))
            eccodes.codes_write(c, fout)
            eccodes.codes_release(c)
            eccodes.codes_release(h)
    r = run_tool(grib_compare, "-b", "totalLength,section5Length,section7Length,referenceValue,"
                 "binaryScaleFactor,codedValues,packingError,unpackedError", src, again)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_tool(grib_compare, "-P", "-A", "0.01", src, again)  # values within packing precision
    assert r.returncode == 0, r.stdout + r.stderr


def test_cdo_reads_every_file_without_warnings(published: PublishResult, run: RunMeta) -> None:
    cdo = tool("cdo")
    for step in run.steps:
        r = run_tool(cdo, "-s", "info", published.path / f"2023010106-{step}h.grib2")
        assert r.returncode == 0, r.stderr
        assert "warning" not in r.stderr.lower() and "error" not in r.stderr.lower(), r.stderr
        assert len([ln for ln in r.stdout.splitlines() if ln.strip()[:1].isdigit()]) == len(run.channels_at(step))
    r = run_tool(cdo, "-s", "sinfon", published.path / "2023010106.nc")
    assert r.returncode == 0, r.stderr
    assert "ForecastRefTime =  2023-01-01T06:00:00" in r.stdout and "time : 3 steps" in r.stdout
    # CDO only notes that it has no slot for the CF auxiliary lead/reference-time coordinates.
    other = [ln for ln in r.stderr.splitlines() if ln.strip() and "can't be assigned" not in ln]
    assert not other, r.stderr


@pytest.mark.parametrize("layout", ["per_run", "per_step"])
def test_netcdf_passes_the_ioos_cf_1_10_checker(published: PublishResult, run: RunMeta, tmp_path: Path,
                                                 layout: str) -> None:
    # Run as a subprocess: the checker's pyproj/HDF5 stack can crash the interpreter at exit.
    checker = Path(sys.executable).with_name("compliance-checker")
    if not checker.exists():
        pytest.skip("pip install compliance-checker")
    if layout == "per_run":
        path = published.path / "2023010106.nc"
    else:
        res = publish(synthetic.forecast(run, seed=1), run, tmp_path, ["netcdf"],
                      load_config(outputs={"netcdf": {"layout": "per_step"}}))
        assert sorted(p.name for p in res.path.glob("*.nc")) == [f"2023010106-{s}h.nc" for s in (0, 12, 6)]
        path = res.path / "2023010106-6h.nc"
    out = tmp_path / "cf.json"
    r = run_tool(checker, "--test=cf:1.10", "-f", "json", "-o", out, path)
    report = json.loads(out.read_text())["cf:1.10"]
    failed = [(m["name"], m["msgs"]) for m in report["all_priorities"] if m["msgs"] or m["value"][0] < m["value"][1]]
    assert r.returncode == 0 and not failed, (r.stdout, r.stderr, failed)
    assert report["scored_points"] == report["possible_points"]


def test_netcdf_is_cf_and_lossless(published: PublishResult, run: RunMeta) -> None:
    ds = xr.open_dataset(published.path / "2023010106.nc")
    assert ds.attrs["Conventions"] == "CF-1.10"
    assert ds["reference_time"].attrs["standard_name"] == "forecast_reference_time"
    assert ds["reference_time"].values == np.datetime64("2023-01-01T06:00")
    assert ds["step"].attrs["standard_name"] == "forecast_period" and list(ds.step.values) == [0, 6, 12]
    assert ds["time"].attrs["standard_name"] == "time" and ds["time"].values[2] == np.datetime64("2023-01-01T18:00")
    ds = ds.swap_dims(time="step")
    assert ds["latitude"].attrs["bounds"] == "latitude_bnds"
    assert ds["latitude_bnds"].values.min() == -90 and ds["latitude_bnds"].values.max() == 90
    enc = ds["t"].encoding
    assert enc["zlib"] and enc["shuffle"] and enc["chunksizes"] == (1, 1, 17, 32)
    truth = _truth(run)
    for step in run.steps:
        np.testing.assert_array_equal(ds["t"].sel(step=step).values, truth[step]["t"].values)
    assert np.isnan(ds["tp6"].sel(step=0).values).all()
    np.testing.assert_array_equal(ds["tp6"].sel(step=6).values, truth[6]["tp6"].values)


def test_zarr_serving_store_layout(published: PublishResult, run: RunMeta) -> None:
    store = published.path / "forecast.zarr"
    assert (store / ".zmetadata").is_file()  # consolidated metadata
    ds = xr.open_zarr(store, consolidated=True)
    assert ds.attrs["run_id"] == "2023010106" and ds.attrs["reference_time"] == "2023-01-01T06:00:00Z"
    assert ds.attrs["status"] == "complete" and ds.attrs["grid"] == "11.25deg"
    assert json.loads(ds.attrs["model"])["name"] == "synthetic"
    assert ds.step.dtype.kind == "i" and list(ds.step.values) == [0, 6, 12]
    assert ds.valid_time.dims == ("step",) and ds.valid_time.values[1] == np.datetime64("2023-01-01T12:00")
    assert ds.time.ndim == 0 and ds.time.values == np.datetime64("2023-01-01T06:00")
    assert ds["z"].dims == ("step", "level", "latitude", "longitude") and ds["t2m"].dims == ("step", "latitude",
                                                                                           "longitude")
    # a point query over all lead times touches one chunk per variable and level
    assert ds["z"].encoding["chunks"] == (3, 1, 17, 32)
    truth = _truth(run)
    for step in run.steps:
        np.testing.assert_array_equal(ds["z"].sel(step=step).values, truth[step]["z"].values)
        np.testing.assert_array_equal(ds["msl"].sel(step=step).values, truth[step]["msl"].values)
    assert np.isnan(ds["tp6"].sel(step=0).values).all()
