"""``fuxiops train prepare`` on a real (tiny) world: streamed, resumable, parallel, bad files counted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fuxiops.errors import DataError
from fuxiops.models.training.config import TrainConfig
from fuxiops.models.training.data import open_gridded
from fuxiops.models.training.prepare import (_deployment, _grid_cycle, cycle_files, grid_world_observations,
                                             prepare_campaign)
from fuxiops.models.training.stages import prepare_normalisation
from fuxiops.pipeline.world.build import WorldSpec, build_world, parse_start
from fuxiops.pipeline.world.model import CoreConfig


@pytest.fixture(scope="module")
def obs_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = WorldSpec(start=parse_start("2023-01-01T00"), days=1, grid="11.25deg", seed=3,
                     truth=CoreConfig(truncation=21, layers=10, dt_minutes=60.0), decorrelation_days=0,
                     with_nwp=False, obs_types=("synop", "gnssro"))
    return build_world(tmp_path_factory.mktemp("pw") / "world", spec=spec).root


def _cfg(world: Path, tmp: Path) -> TrainConfig:
    return TrainConfig(world=str(world), out=str(tmp / "run"), grid="11.25deg", preset="tiny",
                       train_period={"start": "2023-01-01T00", "end": "2023-01-01T18"})


def _copy_world(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("training"))
    return dst


def test_streamed_prepare_resumes_and_matches_direct_ingest(obs_world: Path, tmp_path: Path) -> None:
    world = _copy_world(obs_world, tmp_path / "w1")
    cfg = _cfg(world, tmp_path)
    norm = prepare_normalisation(cfg)
    assert grid_world_observations(cfg, norm, progress=False, stop_after=2) == {"raw": 2}
    part = open_gridded(world / "training" / "gridded_raw.zarr")
    assert len(part.times) == 2 and not part.has(np.datetime64("2023-01-01T18", "ns"))
    counts = grid_world_observations(cfg, norm, progress=False)
    assert counts == {"raw": 4, "sim": 4}
    raw = open_gridded(world / "training" / "gridded_raw.zarr")
    assert len(raw.times) == 4
    # One cycle equals the ingest layer run directly with the campaign's fixed statistics.
    stats = {g: {k: tuple(v) for k, v in d.items()}
             for g, d in json.loads((world / "training" / "obs_normalisation.json").read_text()).items()}
    c = pd.Timestamp("2023-01-01T12")
    direct, _ = _grid_cycle(cycle_files(world, "raw", c), c, _deployment(cfg), stats)
    got = raw.at(c.to_datetime64())
    for g in direct.data_vars:
        np.testing.assert_array_equal(got[g], direct[g].values.astype(np.float32))
    assert json.loads(raw.ds["surface"].attrs["normalisation"])["t2m"][1] > 0

    # An uninterrupted run with two worker processes writes the same stores.
    world2 = _copy_world(obs_world, tmp_path / "w2")
    prepare_campaign(_cfg(world2, tmp_path), progress=False, workers=2)
    for kind in ("raw", "sim"):
        a = xr.open_zarr(world / "training" / f"gridded_{kind}.zarr").load()
        b = xr.open_zarr(world2 / "training" / f"gridded_{kind}.zarr").load()
        xr.testing.assert_identical(a, b)


def test_corrupt_file_is_counted_and_the_cycle_kept(obs_world: Path, tmp_path: Path) -> None:
    world = _copy_world(obs_world, tmp_path / "w")
    # the 06 UTC folder lies only in the window of the 06 UTC cycle (windows are -3 h .. +5 h)
    bad = sorted((world / "obs" / "raw" / "2023010106").glob("*.bufr"))[0]
    bad.write_bytes(b"BUFR" + b"\x00" * 40 + b"garbage")
    cfg = _cfg(world, tmp_path)
    assert prepare_campaign(cfg, progress=False)["gridded cycles"] == {"raw": 4, "sim": 4}
    report = json.loads((world / "training" / "prepare_report.json").read_text())
    assert report["raw"]["2023-01-01 06:00:00"]["files_failed"] >= 1
    assert report["raw"]["2023-01-01 00:00:00"]["files_failed"] == 0
    assert report["raw"]["2023-01-01 06:00:00"]["rows"] > 0

    # A prepare for another training period rebuilds the stores instead of mixing cycles.
    cfg2 = TrainConfig(**{**cfg.model_dump(mode="json"), "train_period": {"start": "2023-01-01T06",
                                                                          "end": "2023-01-01T18"}})
    prepare_campaign(cfg2, progress=False)
    assert len(open_gridded(world / "training" / "gridded_raw.zarr").times) == 3


def test_sparser_simulated_cycles_and_filling_in_later(obs_world: Path, tmp_path: Path) -> None:
    """``sim_every_h`` grids simulated observations only at those UTC hours (raw keeps every cycle); a later
    prepare with the default fills in the other simulated cycles; a bad value is refused by name."""
    world = _copy_world(obs_world, tmp_path / "w")
    cfg = _cfg(world, tmp_path)
    norm = prepare_normalisation(cfg)
    assert grid_world_observations(cfg, norm, progress=False, sim_every_h=12) == {"raw": 4, "sim": 2}
    sim = open_gridded(world / "training" / "gridded_sim.zarr")
    assert [str(t)[11:13] for t in sim.times] == ["00", "12"]
    assert grid_world_observations(cfg, norm, progress=False) == {"raw": 4, "sim": 4}
    with pytest.raises(DataError, match="sim_every_h"):
        grid_world_observations(cfg, norm, progress=False, sim_every_h=8)


def test_offline_cycle_qc_records_background_check_rejections(obs_world: Path, tmp_path: Path) -> None:
    """The diagnostic of bench/cycling_qc.py: a background far from the observations has them rejected
    by the |O-B| check, one close to the truth keeps them, and no background skips the check."""
    from fuxiops.models.training.experiments import obs_for_cycle

    c = np.datetime64("2023-01-01T12", "ns")
    dep = _deployment(_cfg(obs_world, tmp_path))
    truth = xr.open_zarr(obs_world / "truth.zarr").sel(time=[c]).load()
    far = truth.copy()
    far["t"] = truth["t"] + 40.0
    far["t2m"] = truth["t2m"] + 40.0
    reports: list[dict] = []
    for bg in (truth, far, None):
        assert obs_for_cycle(obs_world, "raw", c, dep, None, background=bg, reports=reports) is not None
    near, off, unchecked = reports
    assert near["cycle"] == "2023-01-01T12" and near["rows"] == off["rows"] == unchecked["rows"] > 0
    assert unchecked["background_rejected"] == 0
    assert near["background_rejected"] < 0.05 * near["rows"]
    assert off["background_rejected"] > near["background_rejected"] + 0.2 * off["rows"]
    assert off["used"] < near["used"] <= unchecked["used"]
    assert off["by_type"]["synop"]["background_rejected"] > 0
