"""Integration with the testbed world: its BUFR output ingests cleanly and QC finds its planted gross errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from fuxiops.catalog import TESTBED
from fuxiops.config import load_config
from fuxiops.pipeline.obs.flags import QCFlag, is_rejected
from fuxiops.pipeline.obs.ingest import ingest

generate = pytest.importorskip("fuxiops.pipeline.world.obs.generate")
build = pytest.importorskip("fuxiops.pipeline.world.build")

LEVELS = np.asarray(TESTBED.levels, dtype=float)


def analytic_state(grid) -> dict[str, np.ndarray]:
    """A smooth known state (as the world's own observation tests use)."""
    lat = grid.latitudes[:, None] * np.ones((1, grid.n_lon))
    t_col = 220.0 + 60.0 * (LEVELS / 1000.0)
    z_col = 287.0 * 250.0 * np.log(1000.0 / LEVELS)
    shp = (LEVELS.size,) + grid.shape
    return {"z": np.broadcast_to(z_col[:, None, None], shp).astype(np.float32),
            "t": np.broadcast_to(t_col[:, None, None], shp).astype(np.float32),
            "u": np.full(shp, 10.0, np.float32), "v": np.zeros(shp, np.float32),
            "t2m": (280.0 + 0.2 * lat).astype(np.float32), "u10": np.full(grid.shape, 3.0, np.float32),
            "v10": np.full(grid.shape, 4.0, np.float32), "msl": np.full(grid.shape, 99500.0, np.float32)}


def test_world_bufr_ingest_and_qc(tmp_path: Path) -> None:
    spec = build.WorldSpec(start=build.parse_start("2023-01-01T00"), days=1, grid="5.625deg", seed=5)
    maker = generate.ObservationMaker(tmp_path / "obs", spec)
    state = analytic_state(spec.grid_spec)
    for hour in (0, 1):
        maker.make_hour(spec.start, hour, [state] * 5, simulated=False)
    files = sorted((tmp_path / "obs" / "raw").rglob("*.bufr"))
    assert {f.name.split("_")[0] for f in files} >= {"synop", "temp", "amdar", "gnssro", "mwts"}
    g = spec.grid_spec
    bg = xr.Dataset({k: (("level", "latitude", "longitude") if v.ndim == 3 else ("latitude", "longitude"), v)
                     for k, v in state.items()},
                    coords={"level": LEVELS.astype(int), "latitude": g.latitudes, "longitude": g.longitudes})
    cfg = load_config(grid="5.625deg", home=str(tmp_path))
    res = ingest(files, cycle_time="2023-01-01T00", config=cfg, background=bg, mode="serial")
    rep = res.report
    assert rep["quarantined"] == [] and rep["totals"]["files_failed"] == 0
    assert {"synop", "temp", "amdar", "gnssro", "radiance"} <= set(rep["by_report_type"])
    df = res.table.to_pandas()
    used = ~is_rejected(df.qc_flags.to_numpy())
    # The world samples this very state: used observations sit close to it ...
    for var, tol in (("t2m", 3.0), ("t", 3.0), ("msl", 300.0), ("u10", 4.0)):
        d = (df.value - df.background)[(df.variable == var) & used]
        assert len(d) > 10 and abs(float(np.median(d))) < tol, var
    # ... and the gross errors it plants are caught by the background or bi-weight checks.
    caught = (df.qc_flags.to_numpy() & int(QCFlag.BACKGROUND | QCFlag.BIWEIGHT)) != 0
    assert caught.sum() > 0
    # Refractivity from the background (N = 77.6 P/T) matches the world's GNSS-RO operator.
    d = (df.value - df.background)[(df.variable == "refractivity") & used]
    assert len(d) > 10 and abs(float(np.median(d))) < 1.0
    assert res.gridded is not None and float(res.gridded["surface"].sel(surface_channel="t2m_mask").sum()) > 10
