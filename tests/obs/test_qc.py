"""The QC chain on small synthetic tables: each step flags what it should and nothing is dropped."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import xarray as xr

from fuxiops.config import load_config
from fuxiops.grids import get_grid
from fuxiops.pipeline.obs.flags import REJECT_MASK, QCFlag, flag_names, is_rejected
from fuxiops.pipeline.obs.qc import biweight_z, run_qc
from fuxiops.pipeline.obs.schema import RowBuilder, concat_tables

CYCLE = np.datetime64("2023-01-01T00:00", "ns")


def rows(report_type: str, variable: str, values, *, lat=10.0, lon=20.0, minutes=0, vertical=np.nan,
         kind="surface", station="01001", err=1.0, instrument="") -> pa.Table:
    values = np.atleast_1d(np.asarray(values, dtype=float))
    n = values.size
    b = RowBuilder(report_type, "test.bufr", instrument)
    b.add(station_id=np.broadcast_to(np.asarray(station, dtype=object), (n,)),
          time=CYCLE + (np.broadcast_to(np.asarray(minutes), (n,)) * 60e9).astype("timedelta64[ns]"),
          latitude=lat, longitude=lon, vertical=vertical, vertical_kind=kind, variable=variable, value=values,
          obs_error=err, message_index=0, subset_index=np.arange(n))
    return b.table()


def cfg(**qc):
    base = {"steps": ["coordinates", "window", "domain", "bounds", "duplicates", "blacklist", "background",
                      "biweight", "thinning"], "thinning": False}
    base.update(qc)
    return load_config(grid="11.25deg", observations={"qc": base})


def flags_of(table: pa.Table) -> np.ndarray:
    return table.column("qc_flags").to_numpy().astype(np.uint32)


def test_window_per_report_type_and_nothing_dropped() -> None:
    t = concat_tables([
        rows("synop", "t2m", [280.0] * 4, minutes=[-181, -180, 299, 300], station=["a", "b", "c", "d"]),
        rows("temp", "t", [250.0] * 3, minutes=[-180, 179, 180], vertical=50000.0, kind="pressure",
             station=["e", "f", "g"]),
    ])
    out, info = run_qc(t, cycle_time=CYCLE, config=cfg())
    assert out.num_rows == t.num_rows
    f = flags_of(out)
    win = (f & QCFlag.OUT_OF_WINDOW) != 0
    # synop [T-3h, T+5h): -181 out, -180 in, 299 in, 300 out; temp [T-3h, T+3h): 180 out.
    assert win.tolist() == [True, False, False, True, False, False, True]
    assert info["steps"]["window"]["flagged"] == 3
    assert info["steps"]["window"]["by_report_type"] == {"synop": 2, "temp": 1}


def test_coordinates_domain_bounds_duplicates_blacklist() -> None:
    t = concat_tables([
        rows("synop", "t2m", [280.0], lat=np.nan, station="nolat"),
        rows("radiance", "brightness_temperature", [49.0, 200.0, 351.0], vertical=[1.0, 2.0, 3.0], kind="channel",
             station="sat9", instrument="mwts"),
        rows("temp", "t", [220.0, 220.0], vertical=[1000.0, 20000.0], kind="pressure", station="t1"),
        rows("synop", "msl", [101000.0, 101000.0], station="dup"),
        rows("synop", "msl", [101000.0], station="BAD01"),
    ])
    out, info = run_qc(t, cycle_time=CYCLE, config=cfg(blacklist=["BAD*"]))
    names = [flag_names(int(x)) for x in flags_of(out)]
    assert names[0] == ["MISSING_COORDINATE"]
    assert names[1] == ["PHYSICAL_BOUNDS"] and names[2] == [] and names[3] == ["PHYSICAL_BOUNDS"]
    assert names[4] == ["DOMAIN"] and names[5] == []  # 10 hPa is above the 50 hPa model top
    assert names[6] == [] and names[7] == ["DUPLICATE"]
    assert names[8] == ["BLACKLIST"]
    assert {k: v["flagged"] for k, v in info["steps"].items()} == {
        "coordinates": 1, "window": 0, "domain": 1, "bounds": 2, "duplicates": 1, "blacklist": 1, "background": 0,
        "biweight": 0, "thinning": 0}


def test_steps_can_be_switched_off() -> None:
    t = rows("radiance", "brightness_temperature", [10.0], vertical=1.0, kind="channel")
    out, info = run_qc(t, cycle_time=CYCLE, config=cfg(steps=["coordinates", "window"]))
    assert flags_of(out)[0] == 0 and list(info["steps"]) == ["coordinates", "window"]


def background(grid_name: str = "11.25deg") -> xr.Dataset:
    g = get_grid(grid_name)
    lev = np.array([50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000])
    shp = (lev.size, g.n_lat, g.n_lon)
    # T linear in log p (exactly recoverable by log-p interpolation), constant horizontally.
    tprof = 200.0 + 20.0 * np.log(lev / 50.0)
    return xr.Dataset(
        {"t": (("level", "latitude", "longitude"), np.broadcast_to(tprof[:, None, None], shp).astype(np.float32)),
         "t2m": (("latitude", "longitude"), np.full(g.shape, 280.0, np.float32)),
         "msl": (("latitude", "longitude"), np.full(g.shape, 101000.0, np.float32))},
        coords={"level": lev, "latitude": g.latitudes, "longitude": g.longitudes})


def test_background_check_and_o_minus_b() -> None:
    p = np.array([30000.0, 70000.0])
    t_true = 200.0 + 20.0 * np.log(p / 5000.0)
    t = concat_tables([
        rows("temp", "t", t_true + [0.5, 9.0], vertical=p, kind="pressure", station=["s1", "s2"]),
        rows("synop", "t2m", [281.0, 295.0], station=["a", "b"], err=1.5),
        rows("radiance", "brightness_temperature", [230.0], vertical=1.0, kind="channel"),
    ])
    out, info = run_qc(t, cycle_time=CYCLE, config=cfg(background_k=5.0), background=background())
    df = out.to_pandas()
    np.testing.assert_allclose(df.background.to_numpy()[:4], [*t_true, 280.0, 280.0], rtol=1e-6)
    f = flags_of(out)
    assert [bool(x & QCFlag.BACKGROUND) for x in f] == [False, True, False, True, False]
    assert f[4] & QCFlag.NO_BACKGROUND and not (f[4] & REJECT_MASK)


def test_biweight_flags_outlier_per_latitude_band() -> None:
    rng = np.random.default_rng(1)
    vals = rng.normal(280.0, 1.0, 40)
    vals[7] = 300.0  # 20 sigma: gross error
    t = concat_tables([rows("synop", "t2m", vals, lat=rng.uniform(-20, 20, 40), station=[f"s{i}" for i in range(40)]),
                       # A different band with a different climate: its own statistics, no flags.
                       rows("synop", "t2m", rng.normal(250.0, 1.0, 40), lat=70.0,
                            station=[f"p{i}" for i in range(40)], lon=rng.uniform(0, 300, 40))])
    out, info = run_qc(t, cycle_time=CYCLE, config=cfg())
    f = flags_of(out)
    assert np.flatnonzero(f & QCFlag.BIWEIGHT).tolist() == [7]
    z = biweight_z(np.r_[rng.normal(0, 1, 500), 50.0])
    assert abs(z[-1]) > 20 and np.abs(z[:-1]).max() < 5


def test_thinning_superobs() -> None:
    t = rows("synop", "t2m", [280.0, 282.0, 290.0], lat=[10.0, 10.5, -40.0], lon=[20.0, 20.2, 100.0],
             station=["a", "b", "c"])
    out, _ = run_qc(t, cycle_time=CYCLE, config=cfg(thinning=True))
    df = out.to_pandas()
    f = flags_of(out)
    # a and b share the 11.25-degree cell (11.25N, 22.5E) and the hour: one super-ob, the other thinned.
    assert int(f[0] & QCFlag.THINNED) + int(f[1] & QCFlag.THINNED) == int(QCFlag.THINNED)
    rep = 0 if not f[0] & QCFlag.THINNED else 1
    assert f[rep] & QCFlag.SUPEROB and df.superob_value[rep] == pytest.approx(281.0) and df.superob_count[rep] == 2
    assert df.superob_value[2] == 290.0 and not is_rejected(f[2:3])[0]
