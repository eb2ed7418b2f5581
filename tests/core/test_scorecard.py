"""``fuxiops evaluate``: scorecards, persistence and the share of cells beaten, on seeded stores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from typer.testing import CliRunner

from fuxiops.cli.main import _register_groups, app
from fuxiops.grids import get_grid

G = get_grid("11.25deg")


def _truth(n: int = 16) -> xr.Dataset:
    rng = np.random.default_rng(1)
    times = pd.date_range("2023-01-01", periods=n, freq="6h")
    t = np.cumsum(rng.normal(0, 1, (n, 2, *G.shape)), axis=0).astype("f4") + 250
    msl = np.cumsum(rng.normal(0, 50, (n, *G.shape)), axis=0).astype("f4") + 101300
    return xr.Dataset({"t": (("time", "level", "latitude", "longitude"), t),
                       "msl": (("time", "latitude", "longitude"), msl)},
                      coords={"time": times, "level": [500, 850], "latitude": G.latitudes,
                              "longitude": G.longitudes})


def _forecast(truth: xr.Dataset, noise: float, seed: int) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    inits = truth.time.values[:8]
    steps = np.array([0, 6, 12, 18], dtype=np.int64)
    parts = []
    for s in steps:
        v = truth.sel(time=inits + np.timedelta64(int(s), "h")).assign_coords(time=inits)
        parts.append(v + noise * (s / 6) * xr.apply_ufunc(lambda a: rng.normal(0, 1, a.shape).astype("f4"), v))
    return xr.concat(parts, dim=xr.DataArray(steps, dims=["step"], name="step")).transpose("time", "step", ...)


def test_evaluate_writes_scorecard_and_counts_wins(tmp_path: Path) -> None:
    truth = _truth()
    truth.to_zarr(tmp_path / "truth.zarr")
    _forecast(truth, 0.1, 2).to_zarr(tmp_path / "good.zarr")
    _forecast(truth, 5.0, 3).to_zarr(tmp_path / "bad.zarr")
    _register_groups()
    r = CliRunner().invoke(app, ["evaluate", "-f", f"fux={tmp_path / 'good.zarr'}", "-r", str(tmp_path / "truth.zarr"),
                                 "-b", f"nwp={tmp_path / 'bad.zarr'}", "-o", str(tmp_path / "card")])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "card" / "summary.json").read_text())
    by = {c["baseline"]: c for c in summary["comparisons"]}
    # 3 channels (t500, t850, msl) x 3 leads (step 0 excluded).
    assert by["nwp"]["cells"] == 9 and by["nwp"]["wins"] == 9
    assert by["persistence"]["cells"] == 9
    scores = pd.read_csv(tmp_path / "card" / "scores.csv")
    s0 = scores[(scores.system == "fux") & (scores.step == 0) & (scores.metric == "rmse")]
    assert np.allclose(s0.value, 0.0, atol=1e-4)
    assert (tmp_path / "card" / "scorecard.png").stat().st_size > 1000
    assert "t850" in (tmp_path / "card" / "scorecard.md").read_text()


def test_evaluate_errors_name_the_problem(tmp_path: Path) -> None:
    _register_groups()
    truth = _truth()
    truth.to_zarr(tmp_path / "truth.zarr")
    r = CliRunner().invoke(app, ["evaluate", "-f", str(tmp_path / "nope.zarr"), "-r", str(tmp_path / "truth.zarr"),
                                 "-o", str(tmp_path / "o")])
    assert r.exit_code != 0 and "does not exist" in str(r.exception)
    r = CliRunner().invoke(app, ["evaluate", "-f", str(tmp_path / "truth.zarr"), "-r", str(tmp_path / "truth.zarr"),
                                 "-o", str(tmp_path / "o")])
    assert "no 'step' dimension" in str(r.exception)
