"""End to end: a tiny world (T21 truth, 11.25-degree grid, 2 days), resume, seeds and the shipped climate."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from fuxiops.catalog import TESTBED
from fuxiops.grids import get_grid
from fuxiops.pipeline.world.build import WorldError, WorldSpec, build_world, open_world, parse_start
from fuxiops.pipeline.world.model import TRUTH_CORE, CoreConfig, ModelState, get_core
from fuxiops.pipeline.world.postprocess import Regridder, state_dataset, to_state_arrays
from fuxiops.pipeline.world.spinup import shipped_state_paths

TEST_TRUTH = CoreConfig(truncation=21, layers=10, dt_minutes=60.0)


def tiny_spec(seed: int = 1, days: int = 2) -> WorldSpec:
    return WorldSpec(start=parse_start("2023-01-01T00"), days=days, grid="11.25deg", seed=seed, truth=TEST_TRUTH,
                     decorrelation_days=1, nwp_max_lead_h=24, obs_types=("gnssro",))


def _digest(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith("_build"):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    return build_world(tmp_path_factory.mktemp("w") / "world", spec=tiny_spec())


def test_layout_and_conventions(world) -> None:
    assert world.complete
    t = world.truth
    assert list(t["t"].dims) == ["time", "level", "latitude", "longitude"]
    assert list(t["t2m"].dims) == ["time", "latitude", "longitude"]
    assert t["t"].dtype == np.float32 and t["t"].attrs["units"] == "K"
    assert t["z"].attrs["standard_name"] == "geopotential"
    assert t.sizes["time"] == 8 and list(t["level"].values) == list(TESTBED.levels)
    get_grid("11.25deg").check_coords(t["latitude"].values, t["longitude"].values)
    assert str(t["time"].values[1]) .startswith("2023-01-01T06")
    assert t["t"].encoding["chunks"][0] == 4  # one day per time chunk
    for name in ("truth", "reanalysis"):
        ds = world.open(name).load()
        for v in ds.data_vars:
            assert np.isfinite(ds[v].values).all(), f"{name}.{v} has missing values"
        assert 180 < float(ds["t"].min()) and float(ds["t"].max()) < 330
        assert 9.0e4 < float(ds["msl"].min()) and float(ds["msl"].max()) < 1.1e5
    nwp = world.nwp
    assert list(nwp["u"].dims) == ["time", "step", "level", "latitude", "longitude"]
    assert list(nwp["step"].values) == [0, 6, 12, 18, 24] and nwp.sizes["time"] == 4  # 00/12 UTC inits
    assert world.background_pool(6, 18).sizes["step"] == 3
    st = world.static
    assert set(st.data_vars) == {"lsm", "z"} and float(st["lsm"].mean()) > 0.1  # real coastlines
    info = json.loads((world.root / "world.json").read_text())
    assert info["spec"]["seed"] == 1 and "dinosaur" in info["versions"]
    assert len(world.obs_files("raw", "gnssro")) == 48 and len(world.obs_files("sim")) == 48


def test_reanalysis_has_its_documented_errors(world) -> None:
    t, r = world.truth.load(), world.reanalysis.load()
    w = np.cos(np.radians(t["latitude"]))
    diff = (r["t"] - t["t"]).weighted(w).mean(["time", "latitude", "longitude"])
    assert 0.6 < float(diff.sel(level=850)) < 1.4  # +1 K lower-tropospheric bias
    assert abs(float(diff.sel(level=300))) < 0.4
    rmse = float(np.sqrt(((r["u"] - t["u"]) ** 2).sel(level=500).mean()))
    assert 0.3 < rmse < 5.0  # random + smoothing error, not a copy


def test_nwp_starts_near_the_reanalysis_and_drifts(world) -> None:
    nwp, r = world.nwp.load(), world.reanalysis.load()
    r0 = r["z"].sel(level=500).isel(time=[0, 2, 4, 6])
    f = nwp["z"].sel(level=500)
    err0 = float(np.sqrt(((f.isel(step=0).values - r0.values) ** 2).mean()))
    err24 = float(np.sqrt(((f.isel(step=4).values[:2] - r["z"].sel(level=500).isel(time=[4, 6]).values) ** 2).mean()))
    assert err0 < 300.0 < err24 * 10 and err24 > err0  # lower resolution + other physics: errors grow


def test_resume_after_interruption_is_byte_identical(world, tmp_path: Path) -> None:
    root = tmp_path / "resumed"
    build_world(root, spec=tiny_spec(), stop_after_days=1)
    assert not open_world(root).complete
    # a crash in the middle of day 2: a torn chunk and a torn observation file
    (root / "truth.zarr" / "t" / "1.0.0.0").write_bytes(b"torn")
    torn = root / "obs" / "raw" / "2023010205" / "gnssro_2023010205.bufr"
    torn.parent.mkdir(parents=True, exist_ok=True)
    torn.write_bytes(b"BUFR")
    build_world(root, spec=tiny_spec())
    assert _digest(root) == _digest(world.root)


def test_settings_mismatch_and_bad_input(world, tmp_path: Path) -> None:
    with pytest.raises(WorldError, match="other settings"):
        build_world(world.root, spec=tiny_spec(seed=2))
    with pytest.raises(WorldError):
        parse_start("2023-01-01T03")
    with pytest.raises(WorldError):
        parse_start("yesterday")
    with pytest.raises(WorldError):
        WorldSpec(start=parse_start("2023-01-01"), days=0)
    with pytest.raises(Exception, match="unknown grid"):
        WorldSpec(start=parse_start("2023-01-01"), days=1, grid="7deg")
    with pytest.raises(WorldError, match="no 'r'"):
        WorldSpec(start=parse_start("2023-01-01"), days=1, variables=TESTBED.__class__())


def test_two_seeds_are_uncorrelated_at_first_output() -> None:
    from fuxiops.pipeline.world.seeds import initial_state
    core = get_core(TEST_TRUTH)

    def anomaly(seed: int) -> np.ndarray:
        f = core.nodal(initial_state(seed, core, decorrelation_days=1))
        x = np.concatenate([f.t[-3], f.u[2]])  # lower-tropospheric T and upper-level u
        return (x - x.mean(axis=-1, keepdims=True)).ravel()

    a, b = anomaly(11), anomaly(12)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.3
    np.testing.assert_array_equal(a, anomaly(11))  # same seed, same weather


def test_shipped_states_have_the_held_suarez_climate() -> None:
    from fuxiops.pipeline.world.describe import jet_check
    paths = shipped_state_paths()
    assert len(paths) >= 4, "the package must ship several spun-up states"
    core = get_core(TRUTH_CORE)
    lat, lon = core.nodal_latlon
    g = get_grid("2.8125deg")
    regrid = Regridder(lat[::-1], lon, g)
    arrays = []
    for p in paths:
        s, _ = ModelState.load(p)
        core.check_state(s)
        arrays.append(to_state_arrays(core.nodal(s), regrid, TESTBED))
    ds = state_dataset(arrays, {"time": np.arange(len(arrays))}, g, TESTBED)
    jc = jet_check(ds)
    assert jc.problems(u_range=(22.0, 38.0), lat_range=(25.0, 50.0)) == [], jc
    # the shipped states are far apart in time: their weather is unrelated
    t850 = ds["t"].sel(level=850).values
    anom = t850 - t850.mean(axis=-1, keepdims=True)
    r = np.corrcoef(anom[0].ravel(), anom[1].ravel())[0, 1]
    assert abs(r) < 0.3


def test_observation_writers_do_not_change_the_world(world, tmp_path: Path) -> None:
    """In-process and parallel observation writing give the same bytes; a writer's failure stops the
    build at that day (nothing after it counts as done) and a resume completes it."""
    serial = build_world(tmp_path / "serial", spec=tiny_spec(), obs_workers=0)
    assert _digest(serial.root) == _digest(world.root)
    root = tmp_path / "failing"
    build_world(root, spec=tiny_spec(), stop_after_days=1, obs_workers=2)
    blocker = root / "obs" / "raw" / "2023010203"  # a file where day 2's hour-3 folder must go
    blocker.write_text("not a folder")
    with pytest.raises(OSError):
        build_world(root, spec=tiny_spec(), obs_workers=2)
    assert json.loads((root / "_build" / "progress.json").read_text())["days_done"] == 1
    blocker.unlink()
    build_world(root, spec=tiny_spec(), obs_workers=2)
    assert _digest(root) == _digest(world.root)
