"""Publishing behaviour: atomicity, bad input, full disks, streaming, re-publishing, the CLI."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from fuxiops.catalog import PRODUCTION as PRODUCTION_SET
from fuxiops.catalog import TESTBED
from fuxiops.config import load_config
from fuxiops.errors import DataError, GridError, UnknownVariableError
from fuxiops.grids import get_grid
from fuxiops.pipeline.products import WRITERS, ProductWriter, PublishError, RunMeta, StepData, publish, synthetic
from fuxiops.pipeline.products.base import WrittenFile

from .conftest import GRID, REF

SMALL = synthetic.run_meta(GRID, TESTBED, REF, n_steps=2)


def _assert_nothing_published(out: Path) -> None:
    assert not out.exists() or list(out.iterdir()) == [], list(out.iterdir())


def _tamper(run: RunMeta, at_step: int, fn) -> Iterator[xr.Dataset]:  # type: ignore[no-untyped-def]
    for ds in synthetic.forecast(run):
        yield fn(ds) if int(ds.step) == at_step else ds


@pytest.mark.parametrize("value, match", [(np.inf, "infinite"), (-np.inf, "infinite"), (500.0, "physical range")])
def test_bad_values_publish_nothing(tmp_path: Path, value: float, match: str) -> None:
    def bad(ds: xr.Dataset) -> xr.Dataset:
        ds = ds.copy(deep=True)
        ds["t"].values[3, 5, 7] = value
        return ds

    with pytest.raises(DataError, match=f"t200 at step 6 h .*{match}"):
        publish(_tamper(SMALL, 6, bad), SMALL, tmp_path, ["grib2", "netcdf", "zarr"])
    _assert_nothing_published(tmp_path)


def test_an_all_missing_field_is_refused_but_nan_points_are_published(tmp_path: Path) -> None:
    def holes(ds: xr.Dataset) -> xr.Dataset:
        ds = ds.copy(deep=True)
        ds["msl"].values[2:4, :] = np.nan
        return ds

    res = publish(_tamper(SMALL, 6, holes), SMALL, tmp_path / "ok", ["grib2", "netcdf", "zarr"])
    z = xr.open_zarr(res.path / "forecast.zarr")
    assert np.isnan(z["msl"].sel(step=6).values[2:4]).all() and not np.isnan(z["msl"].sel(step=12).values).any()
    nc = xr.open_dataset(res.path / "2023010106.nc").swap_dims(time="step")
    assert np.isnan(nc["msl"].sel(step=6).values[2:4]).all()

    def empty(ds: xr.Dataset) -> xr.Dataset:
        ds = ds.copy(deep=True)
        ds["u10"].values[:] = np.nan
        return ds

    with pytest.raises(DataError, match="u10 at step 12 h is entirely missing"):
        publish(_tamper(SMALL, 12, empty), SMALL, tmp_path / "bad", ["grib2"])
    _assert_nothing_published(tmp_path / "bad")


def test_unknown_variable_grid_or_missing_variable_is_named(tmp_path: Path) -> None:
    with pytest.raises(UnknownVariableError, match="'sst'"):
        publish(_tamper(SMALL, 0, lambda ds: ds.assign(sst=ds["t2m"])), SMALL, tmp_path, ["grib2"])
    with pytest.raises(DataError, match="lacks variable.*msl"):
        publish(_tamper(SMALL, 6, lambda ds: ds.drop_vars("msl")), SMALL, tmp_path, ["zarr"])
    other = synthetic.run_meta(get_grid("5.625deg"), TESTBED, REF, n_steps=1)
    with pytest.raises(GridError, match="11.25deg"):
        publish(synthetic.forecast(other), SMALL, tmp_path, ["netcdf"])
    with pytest.raises(DataError, match="lacks pressure levels \\[850\\]"):
        publish(_tamper(SMALL, 0, lambda ds: ds.drop_sel(level=850)), SMALL, tmp_path, ["grib2"])
    _assert_nothing_published(tmp_path)


def test_wrong_reference_time_or_short_forecast_is_refused(tmp_path: Path) -> None:
    shifted = _tamper(SMALL, 6, lambda ds: ds.assign_coords(time=np.datetime64("2023-01-01T12:00", "ns")))
    with pytest.raises(DataError, match="reference time"):
        publish(shifted, SMALL, tmp_path, ["grib2"])

    def short() -> Iterator[xr.Dataset]:
        for ds in synthetic.forecast(SMALL):
            if int(ds.step) == 12:
                return
            yield ds

    with pytest.raises(DataError, match="ended before lead time\\(s\\) \\[12\\]"):
        publish(short(), SMALL, tmp_path, ["grib2", "netcdf", "zarr"])
    _assert_nothing_published(tmp_path)


def test_disk_full_publishes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fuxiops.pipeline.products import grib2

    calls = {"n": 0}
    real = grib2._HashingFile.write

    def write(self: grib2._HashingFile, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] > 50:  # partway through the second file
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, data)

    monkeypatch.setattr(grib2._HashingFile, "write", write)
    with pytest.raises(PublishError, match="disk full while publishing run 2023010106"):
        publish(synthetic.forecast(SMALL), SMALL, tmp_path, ["zarr", "grib2", "netcdf"])
    _assert_nothing_published(tmp_path)


def test_zarr_spool_reserves_space_up_front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(PublishError, match="disk full"):
        publish(synthetic.forecast(SMALL), SMALL, tmp_path, ["grib2", "zarr"])
    _assert_nothing_published(tmp_path)


@pytest.mark.parametrize("size_kb", [64, 300, 900])
def test_a_really_full_tmpfs_publishes_nothing(tmp_path: Path, size_kb: int) -> None:
    """A tiny tmpfs fills up at different points (GRIB, NetCDF, Zarr spool or store)."""
    import os
    import subprocess

    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}); the monkeypatched tests cover it")
    try:
        run = synthetic.run_meta(GRID, PRODUCTION_SET, REF, n_steps=2)
        with pytest.raises(PublishError, match="(disk full|I/O error) while publishing run 2023010106"):
            publish(synthetic.forecast(run), run, mnt / "products", ["grib2", "netcdf", "zarr"])
        _assert_nothing_published(mnt / "products")
        # no handle left on a deleted file: the space is really given back
        fds = Path("/proc/self/fd")
        if fds.is_dir():
            leaked = []
            for fd in fds.iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if str(mnt) in target:
                    leaked.append(target)
            assert not leaked
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_replace_is_atomic_and_keeps_formats_not_rewritten(tmp_path: Path) -> None:
    first = publish(synthetic.forecast(SMALL, seed=1), SMALL, tmp_path, ["grib2", "zarr"])
    with pytest.raises(PublishError, match="already published"):
        publish(synthetic.forecast(SMALL, seed=2), SMALL, tmp_path, ["grib2"])
    old = json.loads((first.path / "manifest.json").read_text())
    again = publish(synthetic.forecast(SMALL, seed=2), SMALL, tmp_path, ["grib2"], replace=True,
                    carry_over=first.path)
    new = json.loads((again.path / "manifest.json").read_text())
    by_name_old = {f["name"]: f for f in old["files"]}
    by_name_new = {f["name"]: f for f in new["files"]}
    assert by_name_new["forecast.zarr"] == by_name_old["forecast.zarr"]  # carried over intact
    assert by_name_new["2023010106-6h.grib2"]["sha256"] != by_name_old["2023010106-6h.grib2"]["sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2023010106"]


class _Spy(ProductWriter):
    """Records, for each step written, how many steps the forecast had yielded by then."""

    format = "spy"
    log: list[tuple[int, int]] = []
    yielded = 0

    def open(self, run: RunMeta, directory: Path) -> None:
        pass

    def write(self, step: StepData) -> None:
        _Spy.log.append((step.step, _Spy.yielded))

    def close(self) -> list[WrittenFile]:
        return []


def test_writers_stream_one_step_at_a_time(tmp_path: Path) -> None:
    run = synthetic.run_meta(GRID, TESTBED, REF, n_steps=6)

    def counted() -> Iterator[xr.Dataset]:
        for ds in synthetic.forecast(run):
            _Spy.yielded += 1
            yield ds

    WRITERS.register("spy", _Spy)
    _Spy.log, _Spy.yielded = [], 0
    try:
        publish(counted(), run, tmp_path, ["spy"])
    finally:
        WRITERS._entries.pop("spy")  # noqa: SLF001 - test-only registration
    assert [s for s, _ in _Spy.log] == list(run.steps)
    # when step k is written the generator is at most one step ahead: memory is bounded
    for i, (_, yielded) in enumerate(_Spy.log):
        assert yielded <= i + 2


def test_grib_options_from_configuration(tmp_path: Path) -> None:
    cfg = load_config(outputs={"grib": {"bits_per_value": 12, "packing": "grid_ccsds", "centre": "egrr",
                                        "subcentre": 2, "generating_process": 7,
                                        "filename_template": "fx_{date}{time}_{step:03d}.grib2"}})
    res = publish(synthetic.forecast(SMALL), SMALL, tmp_path, ["grib2"], cfg)
    import eccodes

    path = res.path / "fx_202301010600_012.grib2"
    assert (res.path / "fx_202301010600_012.index").is_file()
    with open(path, "rb") as fh:
        h = eccodes.codes_grib_new_from_file(fh)
        got = {k: eccodes.codes_get(h, k) for k in ("packingType", "bitsPerValue", "centre", "subCentre",
                                                     "generatingProcessIdentifier", "stepRange")}
        eccodes.codes_release(h)
    assert got == {"packingType": "grid_ccsds", "bitsPerValue": 12, "centre": "egrr", "subCentre": 2,
                   "generatingProcessIdentifier": 7, "stepRange": "12"}


@pytest.mark.parametrize("template, match", [("{run}.grib2", "must contain \\{step\\}"),
                                             ("{run}-{stp}.grib2", "unknown field")])
def test_bad_filename_template_is_a_config_error(tmp_path: Path, template: str, match: str) -> None:
    from fuxiops.errors import ConfigError

    cfg = load_config(outputs={"grib": {"filename_template": template}})
    with pytest.raises(ConfigError, match=match):
        publish(synthetic.forecast(SMALL), SMALL, tmp_path, ["grib2"], cfg)
    _assert_nothing_published(tmp_path)


def test_cli_republishes_a_run_from_its_zarr_store(tmp_path: Path, fuxiops_home: Path) -> None:
    from fuxiops.cli import main as cli_main

    first = publish(synthetic.forecast(SMALL, seed=3), SMALL, tmp_path / "work", ["zarr"])
    if not any(g.name == "publish" for g in cli_main.app.registered_groups):
        cli_main._register_groups()  # noqa: SLF001
    runner = CliRunner()
    r = runner.invoke(cli_main.app, ["publish", str(first.path), "--formats", "grib2,netcdf,zarr"])
    assert r.exit_code == 0, r.output
    out = fuxiops_home / "products" / "2023010106"
    m = json.loads((out / "manifest.json").read_text())
    assert {f["format"] for f in m["files"]} == {"grib2", "grib2-index", "netcdf", "zarr"}
    a = xr.open_zarr(first.path / "forecast.zarr")
    b = xr.open_zarr(out / "forecast.zarr")
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert a.attrs["run_id"] == b.attrs["run_id"] and a.attrs["model"] == b.attrs["model"]
    r = runner.invoke(cli_main.app, ["publish", str(first.path), "--formats", "grib3"])
    assert r.exit_code != 0
    r = runner.invoke(cli_main.app, ["publish", str(tmp_path / "nowhere")])
    assert r.exit_code != 0 and "forecast.zarr" in str(r.exception or r.output)


def test_netcdf_without_h5py_writes_the_same_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    fast = publish(synthetic.forecast(SMALL), SMALL, tmp_path / "fast", ["netcdf"])
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "h5py" else real(n, *a))
    slow = publish(synthetic.forecast(SMALL), SMALL, tmp_path / "slow", ["netcdf"])
    a = xr.open_dataset(fast.path / "2023010106.nc")
    b = xr.open_dataset(slow.path / "2023010106.nc")
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert a["t"].encoding["zlib"] and b["t"].encoding["zlib"]
