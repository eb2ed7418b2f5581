"""Observation files: BUFR readable by generic readers, values from the operators, errors as documented."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fuxiops.catalog import TESTBED
from fuxiops.pipeline.world.build import WorldSpec, parse_start
from fuxiops.pipeline.world.obs.generate import GROSS_FRACTION, MWTS_CHANNELS, ObservationMaker

LEVELS = np.asarray(TESTBED.levels, dtype=float)


def _analytic_state(spec: WorldSpec) -> dict[str, np.ndarray]:
    """A smooth, known state: T2M linear in latitude, isothermal-ish columns, uniform wind."""
    g = spec.grid_spec
    lat = g.latitudes[:, None] * np.ones((1, g.n_lon))
    t_col = 220.0 + 60.0 * (LEVELS / 1000.0)  # warmer below
    z_col = 287.0 * 250.0 * np.log(1000.0 / LEVELS)
    return {"z": np.broadcast_to(z_col[:, None, None], (13,) + g.shape).astype(np.float32),
            "t": np.broadcast_to(t_col[:, None, None], (13,) + g.shape).astype(np.float32),
            "u": np.full((13,) + g.shape, 10.0, np.float32), "v": np.zeros((13,) + g.shape, np.float32),
            "t2m": (280.0 + 0.2 * lat).astype(np.float32), "u10": np.full(g.shape, 3.0, np.float32),
            "v10": np.full(g.shape, 4.0, np.float32), "msl": np.full(g.shape, 99500.0, np.float32)}


@pytest.fixture(scope="module")
def obs_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, WorldSpec]:
    spec = WorldSpec(start=parse_start("2023-01-01T00"), days=1, grid="5.625deg", seed=5)
    root = tmp_path_factory.mktemp("obs")
    om = ObservationMaker(root, spec)
    states = [_analytic_state(spec)] * 5
    for hour in (0, 1):
        om.make_hour(spec.start, hour, states, simulated=False)
        om.make_hour(spec.start, hour, states, simulated=True)
    return root, spec


def _read(path: Path, columns: tuple[str, ...]):
    import pdbufr
    return pdbufr.read_bufr(str(path), columns=columns)


def _header(path: Path) -> dict[str, int]:
    import eccodes
    with open(path, "rb") as fh:
        h = eccodes.codes_bufr_new_from_file(fh)
        try:
            return {k: eccodes.codes_get(h, k) for k in ("edition", "bufrHeaderSubCentre", "dataCategory",
                                                          "dataSubCategory", "numberOfSubsets")}
        finally:
            eccodes.codes_release(h)


def test_files_one_per_type_per_hour(obs_dir) -> None:
    root, _ = obs_dir
    raw00 = sorted(p.name for p in (root / "raw" / "2023010100").iterdir())
    assert raw00 == [f"{t}_2023010100.bufr" for t in ("amdar", "gnssro", "mwts", "synop", "temp")]
    raw01 = sorted(p.name for p in (root / "raw" / "2023010101").iterdir())
    assert "temp_2023010101.bufr" not in raw01  # radiosondes at 00/12 UTC only
    assert not list(root.rglob("*.tmp"))


def test_headers_mark_simulated(obs_dir) -> None:
    root, _ = obs_dir
    raw, sim = _header(root / "raw/2023010100/synop_2023010100.bufr"), _header(root / "sim/2023010100/synop_2023010100.bufr")
    assert raw["edition"] == 4 and raw["dataCategory"] == 0
    assert (raw["bufrHeaderSubCentre"], raw["dataSubCategory"]) == (0, 0)
    assert (sim["bufrHeaderSubCentre"], sim["dataSubCategory"]) == (1, 1)
    assert sim["numberOfSubsets"] > raw["numberOfSubsets"]  # raw has gaps, simulated has none


def test_synop_values(obs_dir) -> None:
    root, _ = obs_dir
    df = _read(root / "sim/2023010100/synop_2023010100.bufr",
               ("latitude", "longitude", "blockNumber", "stationNumber", "airTemperature",
                "pressureReducedToMeanSeaLevel", "windDirection", "windSpeed"))
    assert len(df) > 7000 and df["longitude"].between(-180, 180).all()
    err = df["airTemperature"] - (280.0 + 0.2 * df["latitude"])  # bilinear is exact for a linear field
    assert abs(err.mean()) < 0.05 and 0.4 < err.std() < 0.6
    assert abs(df["pressureReducedToMeanSeaLevel"].mean() - 99500.0) < 10
    # wind (3, 4) blows from the south-west: direction ~217 deg, speed 5 m/s
    assert abs(df["windSpeed"].median() - 5.0) < 0.3 and abs(df["windDirection"].median() - 216.9) < 10
    raw = _read(root / "raw/2023010100/synop_2023010100.bufr", ("latitude", "airTemperature"))
    dev = np.abs(raw["airTemperature"] - (280.0 + 0.2 * raw["latitude"]))
    gross = float((dev > 2.5).mean())  # 5 sigma
    assert 0.3 * GROSS_FRACTION < gross < 3 * GROSS_FRACTION


def test_temp_profiles(obs_dir) -> None:
    root, _ = obs_dir
    df = _read(root / "sim/2023010100/temp_2023010100.bufr",
               ("stationNumber", "pressure", "nonCoordinateGeopotentialHeight", "airTemperature"))
    assert df["stationNumber"].nunique() > 300
    df = df.dropna(subset=["pressure"])
    assert sorted(df["pressure"].unique() / 100) == sorted(LEVELS[LEVELS * 100 <= 99500])  # none below ground
    at500 = df[df["pressure"] == 50000]
    assert abs((at500["airTemperature"] - 250.0).mean()) < 0.2
    assert abs((at500["nonCoordinateGeopotentialHeight"] - 287.0 * 250 * np.log(2) / 9.80665).mean()) < 3


def test_gnssro_refractivity_and_mwts(obs_dir) -> None:
    root, _ = obs_dir
    ro = _read(root / "sim/2023010100/gnssro_2023010100.bufr",
               ("satelliteIdentifier", "latitude", "height", "atmosphericRefractivity"))
    assert ro["satelliteIdentifier"].between(750, 755).all() and ro["latitude"].nunique() == 100
    # isothermal-ish analytic column: at 1000 m, p ~ 1000 exp(-g z / (R 250)) hPa and T from the profile
    low = ro[ro["height"] == 1000]
    assert low["atmosphericRefractivity"].between(230, 300).all()
    mw = _read(root / "raw/2023010100/mwts_2023010100.bufr",
               ("satelliteIdentifier", "latitude", "longitude", "channelNumber", "brightnessTemperature"))
    assert set(mw["channelNumber"].unique()) == {c for c, _, _ in MWTS_CHANNELS}
    assert set(mw["satelliteIdentifier"].unique()) <= {522, 523} and len(mw) > 1000
    assert mw["brightnessTemperature"].between(200, 300).mean() > 0.98


def test_time_keys_match_calendar_arithmetic() -> None:
    from datetime import datetime, timedelta
    when = datetime(2023, 12, 31, 23)
    t_s = np.array([0.0, 59.4, 59.9999996, 3599.0, 420.5, 1830.25, 3600.0 + 0.5])
    keys = ObservationMaker._time_keys(when, t_s, seconds=True)
    for k, s in enumerate(t_s):
        x = when + timedelta(seconds=float(s))
        assert [keys[n][k] for n in ("year", "month", "day", "hour", "minute", "second")] == \
            [x.year, x.month, x.day, x.hour, x.minute, x.second]
