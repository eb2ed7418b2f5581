"""Testbed-style BUFR (edition 4, compressed and not) through the whole ingest, serially and with Dask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fuxiops.config import load_config
from fuxiops.pipeline.obs import decode as dec
from fuxiops.pipeline.obs.ingest import ingest, read_observations
from fuxiops.pipeline.obs.readers import reader_for

from .conftest import make_testbed_files
from .test_qc import background


@pytest.mark.parametrize("compressed", [True, False])
def test_testbed_files_round_trip(tmp_path: Path, compressed: bool) -> None:
    files = make_testbed_files(tmp_path, n=30, seed=3, compressed=compressed)
    expect = {"synop": {"t2m", "msl", "u10", "v10"}, "temp": {"z", "t", "u", "v"}, "amdar": {"t", "u", "v"},
              "gnssro": {"refractivity"}, "mwts": {"brightness_temperature"}}
    for kind, path in files.items():
        res = reader_for(path).read(path)
        assert res.quarantined == [] and res.n_subsets == 30, kind
        df = res.table.to_pandas()
        assert set(df.variable) == expect[kind]
        assert df.time.between(pd.Timestamp("2023-01-01T00:00"), pd.Timestamp("2023-01-01T00:59")).all()
    df = reader_for(files["temp"]).read(files["temp"]).table.to_pandas()
    z = df[(df.variable == "z") & (df.vertical == 50000.0)].value
    np.testing.assert_allclose(z, 5500 * 9.80665)  # geopotential height (gpm) -> geopotential
    df = reader_for(files["mwts"]).read(files["mwts"]).table.to_pandas()
    assert (df.instrument == "mwts").all() and sorted(set(df.vertical.astype(int))) == list(range(1, 14))
    df = reader_for(files["amdar"]).read(files["amdar"]).table.to_pandas()
    assert df.vertical_kind.eq("pressure").all() and df.vertical.between(15000, 101325.01).all()


def test_ingest_testbed_cycle_with_background(testbed_files: dict[str, Path], tmp_path: Path) -> None:
    cfg = load_config(grid="11.25deg", home=str(tmp_path))
    res = ingest(list(testbed_files.values()), cycle_time="2023-01-01T00", config=cfg, out_dir=tmp_path / "out",
                 background=background(), mode="serial")
    rep = res.report
    assert rep["totals"]["files"] == 5 and rep["totals"]["files_failed"] == 0 and rep["quarantined"] == []
    assert set(rep["by_report_type"]) == {"synop", "temp", "amdar", "gnssro", "radiance"}
    assert rep["background"] and any(r["variable"] == "t2m" for r in rep["o_minus_b"])
    t = read_observations(tmp_path / "out" / "observations.parquet")
    assert t.num_rows == rep["totals"]["rows"] == res.table.num_rows
    ds = res.gridded
    assert ds is not None and set(ds.data_vars) == {"surface", "upper_air", "gnssro", "radiance"}
    assert float(ds["radiance"].sel(radiance_channel="brightness_temperature_ch1_mask").sum()) > 0
    assert (tmp_path / "out" / "gridded.nc").is_file()


def test_dask_decoding_equals_serial(testbed_files: dict[str, Path], bufr_dir: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding on an existing scheduler (DASK_SCHEDULER_ADDRESS), in batches of one message, equals serial."""
    from distributed import LocalCluster

    inputs, bad = dec.plan_inputs([*testbed_files.values(), bufr_dir / "aircraft_small.bufr"])
    assert not bad
    serial = dec.decode_files(inputs, mode="serial")
    # Threads keep the test fast; the benchmark runs the default LocalCluster of worker processes.
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0",
                      silence_logs=40) as cluster:
        monkeypatch.setenv(dec.SCHEDULER_ENV, cluster.scheduler_address)
        with dec.DaskRunner(n_workers=1) as runner:
            assert runner.address == cluster.scheduler_address and runner.cluster is None
            assert runner.n_workers == 2
            par = dec.decode_files(inputs, mode="dask", runner=runner, batch_messages=1)
    keys = ["message_index", "subset_index", "variable", "vertical"]
    for path in serial:
        a = serial[path].table.to_pandas().sort_values(keys).reset_index(drop=True)
        b = par[path].table.to_pandas().sort_values(keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
        assert par[path].n_messages == serial[path].n_messages
