"""Fixtures of the observation tests: real BUFR samples and small testbed-style BUFR files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

BUFR_FILES = ["aircraft_small.bufr", "metop-a_hirs_l1b_20181122.bufr", "perf_synop.bufr", "pgps_110.bufr",
              "synop_multi_subset_uncompressed.bufr", "temp.bufr", "tropical_cyclone.bufr"]


@pytest.fixture(scope="session")
def bufr_dir(real_data: Path) -> Path:
    return real_data / "bufr"


def make_testbed_files(folder: Path, cycle: str = "2023010100", n: int = 60, seed: int = 0,
                       compressed: bool = True) -> dict[str, Path]:
    """Write testbed-style files (edition 4, standard WMO keys) for the cycle 2023-01-01T00."""
    from fuxiops.pipeline.obs.encode import write_bufr

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    common = dict(year=[2023] * n, month=[1] * n, day=[1] * n, hour=[0] * n, minute=rng.integers(0, 59, n),
                  latitude=rng.uniform(-80, 80, n), longitude=rng.uniform(0, 360, n))
    lev = np.array([100000.0, 85000.0, 50000.0, 25000.0, 10000.0])
    out = {}
    out["synop"] = folder / f"synop_{cycle}.bufr"
    write_bufr(out["synop"], "synop", dict(blockNumber=[1] * n, stationNumber=np.arange(n),
                                           heightOfStationGroundAboveMeanSeaLevel=[10] * n,
                                           airTemperature=rng.normal(280, 5, n),
                                           pressureReducedToMeanSeaLevel=rng.normal(101000, 500, n),
                                           windDirection=rng.uniform(0, 360, n), windSpeed=rng.uniform(0, 10, n),
                                           **common), compressed=compressed, subsets_per_message=25)
    out["temp"] = folder / f"temp_{cycle}.bufr"
    write_bufr(out["temp"], "temp", dict(blockNumber=[2] * n, stationNumber=np.arange(n), **common),
               dict(pressure=np.tile(lev, (n, 1)), nonCoordinateGeopotentialHeight=np.tile([100, 1500, 5500, 10000,
                                                                                            16000], (n, 1)),
                    airTemperature=np.tile([288, 280, 250, 220, 210], (n, 1)) + rng.normal(0, 1, (n, 5)),
                    windDirection=rng.uniform(0, 360, (n, 5)), windSpeed=rng.uniform(0, 30, (n, 5))),
               compressed=compressed, subsets_per_message=25)
    out["amdar"] = folder / f"amdar_{cycle}.bufr"
    write_bufr(out["amdar"], "amdar", dict(aircraftRegistrationNumberOrOtherIdentification=[f"AC{i}" for i in range(n)],
                                           flightLevel=rng.uniform(0, 12000, n), airTemperature=rng.normal(240, 5, n),
                                           windDirection=rng.uniform(0, 360, n), windSpeed=rng.uniform(0, 30, n),
                                           **common), compressed=compressed, subsets_per_message=25)
    h = np.arange(1000.0, 11000.0, 1000.0)
    out["gnssro"] = folder / f"gnssro_{cycle}.bufr"
    write_bufr(out["gnssro"], "gnssro", dict(satelliteIdentifier=[3] * n, **common),
               dict(height=np.tile(h, (n, 1)), atmosphericRefractivity=np.tile(300 * np.exp(-h / 7000), (n, 1))),
               compressed=compressed, subsets_per_message=25)
    out["mwts"] = folder / f"mwts_{cycle}.bufr"
    write_bufr(out["mwts"], "mwts", dict(satelliteIdentifier=[520] * n, **common),
               dict(channelNumber=np.tile(np.arange(1, 14), (n, 1)), brightnessTemperature=rng.uniform(200, 280, (n, 13))),
               compressed=compressed, subsets_per_message=25)
    return out


@pytest.fixture(scope="session")
def testbed_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_testbed_files(tmp_path_factory.mktemp("testbed") / "obs" / "raw" / "2023010100")
