"""H(x_b) of the microwave sounder (mwts): same physics as the testbed world, used by the background check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import xarray as xr

from fuxiops.catalog import TESTBED
from fuxiops.config import load_config
from fuxiops.grids import get_grid
from fuxiops.pipeline.obs.background import explain_missing, model_equivalents
from fuxiops.pipeline.obs.flags import QCFlag, is_rejected
from fuxiops.pipeline.obs.mwts import MWTS_CHANNELS, brightness_temperature, mwts_weights
from fuxiops.pipeline.obs.qc import run_qc
from fuxiops.pipeline.obs.report import build_report, to_markdown
from fuxiops.pipeline.obs.schema import RowBuilder, concat_tables

LEVELS = np.asarray(TESTBED.levels, dtype=float)
CHANNELS = np.array([c for c, _, _ in MWTS_CHANNELS], dtype=float)
CYCLE = np.datetime64("2023-01-01T00:00", "ns")


def state_ds(t: np.ndarray, grid) -> xr.Dataset:
    return xr.Dataset({"t": (("level", "latitude", "longitude"), t)},
                      coords={"level": LEVELS.astype(int), "latitude": grid.latitudes, "longitude": grid.longitudes})


def sounder_rows(lat, lon, channels, values=None, instrument: str = "mwts") -> pa.Table:
    lat, lon, ch = (np.asarray(x, dtype=float) for x in (lat, lon, channels))
    n = ch.size
    b = RowBuilder("radiance", f"{instrument}_2023010100.bufr", instrument)
    sat = "sat522" if instrument == "mwts" else "sat4"
    b.add(station_id=np.full(n, sat, dtype=object), time=np.full(n, CYCLE), latitude=lat, longitude=lon,
          vertical=ch, vertical_kind="channel", variable="brightness_temperature",
          value=np.full(n, 250.0) if values is None else values, obs_error=0.8, message_index=0,
          subset_index=np.arange(n))
    return b.table()


def test_isothermal_profile_gives_its_temperature_in_every_channel() -> None:
    g = get_grid("11.25deg")
    bg = state_ds(np.full((LEVELS.size,) + g.shape, 231.5, np.float32), g)
    rng = np.random.default_rng(0)
    n = 40
    ch = np.tile(CHANNELS, n)
    tab = sounder_rows(np.repeat(rng.uniform(-89, 89, n), CHANNELS.size),
                       np.repeat(rng.uniform(0, 360, n), CHANNELS.size), ch)
    h = model_equivalents(tab.to_pandas(), bg)
    np.testing.assert_allclose(h, 231.5, rtol=0, atol=1e-9)


def test_field_linear_in_lat_lon_interpolates_exactly() -> None:
    g = get_grid("5.625deg")
    col = 215.0 + 70.0 * (LEVELS / 1000.0) ** 0.7  # a realistic lapse with height
    lat2 = g.latitudes[:, None] * np.ones((1, g.n_lon))
    lon2 = np.ones((g.n_lat, 1)) * g.longitudes[None, :]
    t = col[:, None, None] + 0.3 * lat2[None] + 0.05 * lon2[None]
    bg = state_ds(t, g)
    rng = np.random.default_rng(1)
    n = 50
    # Inside the grid and away from the longitude seam (a linear field is not periodic there).
    lat = rng.uniform(g.latitudes.min(), g.latitudes.max(), n)
    lon = rng.uniform(0.0, g.longitudes.max(), n)
    tab = sounder_rows(np.repeat(lat, CHANNELS.size), np.repeat(lon, CHANNELS.size), np.tile(CHANNELS, n))
    h = model_equivalents(tab.to_pandas(), bg).reshape(n, CHANNELS.size)
    expect = (mwts_weights(LEVELS) @ col)[None, :] + (0.3 * lat + 0.05 * lon)[:, None]
    np.testing.assert_allclose(h, expect, rtol=0, atol=1e-9)
    # The world's operator is this very function (not a copy) and gives the same columns.
    from fuxiops.pipeline.world.obs import operators

    assert operators.brightness_temperature is brightness_temperature and operators.mwts_weights is mwts_weights
    np.testing.assert_allclose(operators.brightness_temperature(LEVELS, col[:, None])[:, 0], mwts_weights(LEVELS) @ col)


def test_other_instruments_and_unknown_channels_are_explained() -> None:
    g = get_grid("11.25deg")
    bg = state_ds(np.full((LEVELS.size,) + g.shape, 240.0, np.float32), g)
    tab = concat_tables([sounder_rows([10.0] * 3, [20.0] * 3, [1.0, 3.0, 5.0]),
                         sounder_rows([10.0] * 4, [20.0] * 4, [1.0, 2.0, 3.0, 4.0], instrument="hirs")])
    df = tab.to_pandas()
    h = model_equivalents(df, bg)
    assert np.isnan(h[0]) and np.allclose(h[1:3], 240.0) and np.isnan(h[3:]).all()
    why = {(r["instrument"], r["rows"]): r["reason"] for r in explain_missing(df, bg, h)}
    assert set(why) == {("mwts", 1), ("hirs", 4)}
    assert "RTTOV" in why[("hirs", 4)] and "channel" in why[("mwts", 1)]
    # The QC report says which rows were not background-checked and why.
    cfg = load_config(grid="11.25deg", observations={"qc": {"thinning": False}})
    out, info = run_qc(tab, cycle_time=CYCLE, config=cfg, background=bg)
    rep = build_report(out, info, cycle="2023010100")
    assert {(r["instrument"], r["rows"]) for r in rep["background_not_checked"]} == {("mwts", 1), ("hirs", 4)}
    md = to_markdown(rep)
    assert "Not background-checked" in md and "hirs" in md
    f = out.column("qc_flags").to_numpy().astype(np.uint32)
    assert ((f & QCFlag.NO_BACKGROUND) != 0).tolist() == [True, False, False, True, True, True, True]


generate = pytest.importorskip("fuxiops.pipeline.world.obs.generate")
build = pytest.importorskip("fuxiops.pipeline.world.build")


def varied_state(grid) -> dict[str, np.ndarray]:
    """A state with horizontal and vertical structure (so the operator's interpolation matters)."""
    lat = np.deg2rad(grid.latitudes)[:, None]
    lon = np.deg2rad(grid.longitudes)[None, :]
    col = 215.0 + 70.0 * (LEVELS / 1000.0) ** 0.7
    t = (col[:, None, None] + 25.0 * np.cos(lat)[None] * (LEVELS / 1000.0)[:, None, None]
         + 4.0 * np.sin(2 * lon)[None] * np.cos(lat)[None])
    return {"t": t.astype(np.float32)}


def test_world_mwts_o_minus_b_shows_the_bias_and_catches_gross_errors(tmp_path: Path) -> None:
    from fuxiops.pipeline.obs.ingest import ingest

    spec = build.WorldSpec(start=build.parse_start("2023-01-01T00"), days=1, grid="5.625deg", seed=5,
                           obs_types=("mwts",))
    maker = generate.ObservationMaker(tmp_path / "obs", spec)
    state = varied_state(spec.grid_spec)
    for hour in (0, 1):  # the truth is steady in time, so only the instrument errors remain in O-B
        maker.make_hour(spec.start, hour, [state] * 5, simulated=False)
    files = sorted((tmp_path / "obs" / "raw").rglob("mwts_*.bufr"))
    assert files
    bg = state_ds(state["t"], spec.grid_spec)
    cfg = load_config(grid="5.625deg", home=str(tmp_path), observations={"qc": {"thinning": False}})
    res = ingest(files, cycle_time="2023-01-01T00", config=cfg, background=bg, mode="serial", grid_output=False)
    df = res.table.to_pandas()
    assert len(df) > 1000 and (df.instrument == "mwts").all()
    assert np.isfinite(df.background).all()
    used = ~is_rejected(df.qc_flags.to_numpy())
    omb = (df.value - df.background)[used]
    max_bias = max(abs(b) for v in generate.SAT_BIAS_K.values() for b in v)
    assert abs(float(omb.mean())) < max_bias + 0.3
    # Per satellite and channel, O-B is the simulated bias plus 0.3 K noise: same physics both sides.
    for sat, biases in generate.SAT_BIAS_K.items():
        for (ch, _, _), bias in zip(MWTS_CHANNELS, biases):
            m = used & (df.station_id == f"sat{sat}") & (df.vertical == ch)
            d = (df.value - df.background)[m]
            assert m.sum() > 30
            assert abs(float(d.mean()) - bias) < 0.1, (sat, ch)
            assert 0.2 < float(d.std()) < 0.4, (sat, ch)
    # The QC report shows the simulated bias per satellite and channel.
    rep = res.report
    rows = {(r["platform"], r["channel"]): r for r in rep["o_minus_b"] if r["instrument"] == "mwts"}
    assert len(rows) == len(MWTS_CHANNELS) * len(generate.SAT_BIAS_K)
    for sat, biases in generate.SAT_BIAS_K.items():
        for (ch, _, _), bias in zip(MWTS_CHANNELS, biases):
            assert abs(rows[(f"sat{sat}", ch)]["mean"] - bias) < 0.1
    # An injected gross error of 8 K (10 sigma_o) is caught by the background check.
    tab = res.table
    vals = tab.column("value").to_numpy().copy()
    k = int(np.flatnonzero(used)[17])
    vals[k] += 8.0
    tab = tab.set_column(tab.schema.get_field_index("value"), "value", pa.array(vals))
    clean = tab.set_column(tab.schema.get_field_index("qc_flags"), "qc_flags",
                           pa.array(np.zeros(tab.num_rows, np.uint32)))
    out, _ = run_qc(clean, cycle_time="2023-01-01T00", config=cfg, background=bg)
    f = out.column("qc_flags").to_numpy().astype(np.uint32)
    assert f[k] & QCFlag.BACKGROUND
    # ... while the rows the first pass used (bias + noise only) pass the check.
    others = np.flatnonzero(used)
    others = others[others != k]
    assert ((f[others] & QCFlag.BACKGROUND) != 0).mean() < 0.005
