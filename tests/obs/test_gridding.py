"""Gridded channels: names match gridded_channels, nearest cell, masks, normalisation, phase, Cressman."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fuxiops.catalog import TESTBED
from fuxiops.config import GriddingConfig, load_config
from fuxiops.grids import get_grid
from fuxiops.pipeline.obs.gridding import gridded_channels, grid_observations, group_channels, normalisation, presence
from fuxiops.pipeline.obs.schema import concat_tables

from .test_qc import CYCLE, rows


def test_channel_names_per_group() -> None:
    cfg = load_config(grid="11.25deg")
    ch = gridded_channels(TESTBED, get_grid("11.25deg"), cfg)
    assert list(ch) == ["surface", "upper_air", "gnssro", "radiance"]
    assert ch["surface"][:4] == ["t2m", "u10", "v10", "msl"] and "t2m_mask" in ch["surface"]
    assert "t2m_confidence" in ch["surface"]  # Cressman on by default for the surface group
    assert len(ch["upper_air"]) == 4 * 13 * 2 + 2 and ch["upper_air"][-2:] == ["time_sin", "time_cos"]
    assert ch["radiance"][0] == "brightness_temperature_ch1" and len(ch["radiance"]) == 26
    assert group_channels(cfg) == {g: len(n) for g, n in ch.items()}
    hourly = gridded_channels(TESTBED, None, GriddingConfig(time_bins="hourly"))
    assert len(hourly["surface"]) == 8 * len(ch["surface"])


def test_nearest_cell_mask_normalisation_and_phase() -> None:
    cfg = load_config(grid="11.25deg", observations={"gridding": {"cressman_radius_km": 0}})
    t = concat_tables([
        rows("synop", "t2m", [280.0, 290.0], lat=[45.0, -22.5], lon=[90.0, 181.0], station=["a", "b"]),
        rows("temp", "t", [220.0], lat=0.0, lon=0.0, vertical=50500.0, kind="pressure", minutes=90),
        rows("radiance", "brightness_temperature", [230.0, 240.0], lat=[0.0, 0.0], lon=[45.0, 45.0],
             vertical=[3.0, 4.0], kind="channel", instrument="mwts"),
        rows("radiance", "brightness_temperature", [230.0], lat=0.0, lon=90.0, vertical=3.0, kind="channel",
             instrument="hirs"),  # not in the radiance group (mwts only)
    ])
    ds = grid_observations(t, cycle_time=CYCLE, config=cfg)
    names = list(ds["surface_channel"].values)
    s = ds["surface"]
    assert s.dtype == np.float32 and s.dims == ("surface_channel", "latitude", "longitude")
    m = s.sel(surface_channel="t2m_mask").values
    assert m.sum() == 2 and m[4, 8] == 1 and m[10, 16] == 1  # 45N 90E -> row 4, col 8; 22.5S 181E -> (10, 16)
    mean, std = normalisation(ds, "surface")["t2m"]
    assert (mean, std) == (285.0, 5.0)
    v = s.sel(surface_channel="t2m").values
    assert v[4, 8] == pytest.approx(-1.0) and v[10, 16] == pytest.approx(1.0) and np.count_nonzero(v) == 2
    assert "t2m_confidence" not in names
    ua = ds["upper_air"]
    assert ua.sel(upper_air_channel="t500_mask").values[8, 0] == 1  # 505 hPa -> the 500 hPa channel
    ph = 2 * np.pi * 1.5 / 24
    assert ua.sel(upper_air_channel="time_sin").values[8, 0] == pytest.approx(np.sin(ph), abs=1e-6)
    assert ua.sel(upper_air_channel="time_cos").values[8, 0] == pytest.approx(np.cos(ph), abs=1e-6)
    r = ds["radiance"]
    assert r.sel(radiance_channel="brightness_temperature_ch3_mask").values.sum() == 1
    assert presence(ds) == {"surface": True, "upper_air": True, "gnssro": False, "radiance": True}
    assert json.loads(ds["gnssro"].attrs["n_cells"])["refractivity_1000m"] == 0


def test_cressman_spreading_and_confidence() -> None:
    cfg = load_config(grid="5.625deg", observations={"gridding": {"cressman_radius_km": 1500}})
    t = rows("synop", "t2m", [280.0, 290.0], lat=[0.0, 45.0], lon=[90.0, 180.0], station=["a", "b"])
    ds = grid_observations(t, cycle_time=CYCLE, config=cfg)
    conf = ds["surface"].sel(surface_channel="t2m_confidence").values
    val = ds["surface"].sel(surface_channel="t2m").values
    i, j = 16, 16  # (0N, 90E) on the 5.625-degree grid
    assert conf[i, j] == pytest.approx(1.0)
    assert 0 < conf[i, j + 1] < 1 and conf[i, j + 1] > conf[i, j + 2]  # decays with distance
    d = 5.625 * np.pi / 180 * 6371.0
    assert conf[i, j + 1] == pytest.approx((1500**2 - d**2) / (1500**2 + d**2), rel=1e-3)
    assert val[i, j + 1] == pytest.approx(val[i, j])  # only one obs within R: its value is spread
    assert conf[i, j + 10] == 0 and val[i, j + 10] == 0
