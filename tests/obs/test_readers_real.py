"""Readers against the real BUFR samples: counts equal ecCodes' own, values equal pdbufr's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fuxiops.pipeline.obs.bufr import split_messages
from fuxiops.pipeline.obs.readers import reader_for, reader_name_for

from .conftest import BUFR_FILES

EXPECTED_READER = {"aircraft_small.bufr": "amdar", "metop-a_hirs_l1b_20181122.bufr": "radiance",
                   "perf_synop.bufr": "synop", "pgps_110.bufr": "gnss", "synop_multi_subset_uncompressed.bufr": "synop",
                   "temp.bufr": "temp", "tropical_cyclone.bufr": "tropical_cyclone"}


def eccodes_counts(path: Path) -> tuple[int, int]:
    """Messages and subsets as ecCodes counts them (no data unpacking)."""
    import eccodes as ec

    n_msg = n_sub = 0
    with open(path, "rb") as f:
        while (h := ec.codes_bufr_new_from_file(f)) is not None:
            n_msg += 1
            n_sub += ec.codes_get_long(h, "numberOfSubsets")
            ec.codes_release(h)
    return n_msg, n_sub


@pytest.mark.parametrize("name", BUFR_FILES)
def test_message_counts_equal_eccodes(bufr_dir: Path, name: str) -> None:
    path = bufr_dir / name
    import eccodes as ec

    raw, problems = split_messages(path)
    with open(path, "rb") as f:
        n_msg = ec.codes_count_in_file(f)
    assert len(raw) == n_msg
    assert all(p.trailing for p in problems)  # the samples are clean: at most padding after the last message
    assert reader_name_for(path) == EXPECTED_READER[name]


@pytest.mark.skipif(shutil.which("bufr_ls") is None, reason="bufr_ls (Debian libeccodes-tools) not installed")
def test_counts_equal_bufr_ls(bufr_dir: Path) -> None:
    small = [n for n in BUFR_FILES if n != "perf_synop.bufr"]
    out = subprocess.run(["bufr_ls", "-p", "numberOfSubsets", *(str(bufr_dir / n) for n in small)],
                         capture_output=True, text=True, check=True).stdout
    total = [line for line in out.splitlines() if "total messages" in line]
    assert total and int(total[0].split()[0]) == sum(len(split_messages(bufr_dir / n)[0]) for n in small)
    subsets = [int(x) for line in out.splitlines() if (x := line.strip()).isdigit()]
    assert sum(subsets) == sum(eccodes_counts(bufr_dir / n)[1] for n in small)


@pytest.mark.parametrize("name", [n for n in BUFR_FILES if n != "perf_synop.bufr"])
def test_every_sample_decodes_fully(bufr_dir: Path, name: str, tmp_path: Path) -> None:
    path = bufr_dir / name
    if name.startswith("metop"):
        # Same template in all 61 messages: the first 6 (6,048 compressed subsets) keep the test fast.
        raw, _ = split_messages(path)
        path = tmp_path / name
        path.write_bytes(b"".join(m.data for m in raw[:6]))
    res = reader_for(path).read(path)
    n_msg, n_sub = eccodes_counts(path)
    assert res.n_messages == n_msg and res.n_subsets == n_sub
    assert res.quarantined == []
    assert res.table.num_rows > 0
    df = res.table.select(["message_index", "subset_index"]).to_pandas()
    # Every row points back to a real message and subset.
    assert df["message_index"].between(0, n_msg - 1).all()
    assert (df["subset_index"] >= 0).all()


def test_perf_synop_subset_counts_and_values(bufr_dir: Path) -> None:
    """The first 600 messages: subsets counted like ecCodes, t2m/msl/wind equal the ecCodes API's values."""
    import eccodes as ec

    path = bufr_dir / "perf_synop.bufr"
    raw, _ = split_messages(path)
    reader = reader_for(path)
    res = reader.read_messages(str(path), raw[:600])
    assert res.n_messages == 600 and res.n_subsets == 600
    skipped = sum(res.skipped.values())
    df = res.table.to_pandas()
    expect_t2m, expect_msl, n_with_data = {}, {}, 0
    for m in raw[:600]:
        h = ec.codes_new_from_message(m.data)
        ec.codes_set(h, "unpack", 1)
        has = ec.codes_is_defined(h, "airTemperatureAt2M") or ec.codes_is_defined(h, "pressureReducedToMeanSeaLevel")
        n_with_data += bool(has)
        if ec.codes_is_defined(h, "airTemperatureAt2M"):
            v = ec.codes_get_double(h, "airTemperatureAt2M")
            if v != ec.CODES_MISSING_DOUBLE:
                expect_t2m[m.index] = v
        if ec.codes_is_defined(h, "pressureReducedToMeanSeaLevel"):
            v = ec.codes_get_double(h, "pressureReducedToMeanSeaLevel")
            if v != ec.CODES_MISSING_DOUBLE:
                expect_msl[m.index] = v
        ec.codes_release(h)
    assert skipped == 600 - n_with_data
    got_t2m = df[df.variable == "t2m"].set_index("message_index")["value"].to_dict()
    got_msl = df[df.variable == "msl"].set_index("message_index")["value"].to_dict()
    assert got_t2m == pytest.approx(expect_t2m) and len(got_t2m) == len(expect_t2m)
    assert got_msl == pytest.approx(expect_msl) and len(got_msl) == len(expect_msl)


def test_temp_values_equal_pdbufr(bufr_dir: Path, tmp_path: Path) -> None:
    import pdbufr

    raw, _ = split_messages(bufr_dir / "temp.bufr")
    path = tmp_path / "temp.bufr"
    path.write_bytes(b"".join(m.data for m in raw[::20]))  # 21 soundings from all over the file
    ref = pdbufr.read_bufr(str(path), columns=("stationNumber", "blockNumber", "pressure", "airTemperature"))
    res = reader_for(path).read(path)
    df = res.table.to_pandas()
    df = df[df.variable == "t"]
    ref = ref.dropna(subset=["airTemperature", "pressure"])
    ref["station_id"] = [f"{int(b):02d}{int(s):03d}" for b, s in zip(ref.blockNumber, ref.stationNumber)]
    a = ref.groupby(["station_id", "pressure"])["airTemperature"].first().sort_index()
    b = df.groupby(["station_id", "vertical"])["value"].first().sort_index()
    assert len(a) == len(b) > 50
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy())
    np.testing.assert_allclose(a.index.get_level_values(1).to_numpy(), b.index.get_level_values(1).to_numpy())


def test_multi_subset_synop_and_aircraft_equal_pdbufr(bufr_dir: Path) -> None:
    import pdbufr

    path = bufr_dir / "synop_multi_subset_uncompressed.bufr"
    ref = pdbufr.read_bufr(str(path), columns=("latitude", "longitude", "airTemperature"))
    df = reader_for(path).read(path).table.to_pandas()
    t = df[df.variable == "t2m"].sort_values("subset_index")
    ref = ref.dropna(subset=["airTemperature"]).drop_duplicates(subset=["latitude", "longitude"])
    np.testing.assert_allclose(t["latitude"].to_numpy(), ref["latitude"].to_numpy())
    np.testing.assert_allclose(t["value"].to_numpy(), ref["airTemperature"].to_numpy())

    path = bufr_dir / "aircraft_small.bufr"
    ref = pdbufr.read_bufr(str(path), columns=("latitude", "longitude", "pressure", "airTemperature", "windSpeed",
                                               "windDirection"))
    df = reader_for(path).read(path).table.to_pandas()
    t = df[df.variable == "t"].sort_values("message_index")
    np.testing.assert_allclose(t["value"].to_numpy(), ref["airTemperature"].to_numpy())
    np.testing.assert_allclose(t["vertical"].to_numpy(), ref["pressure"].to_numpy())
    u = df[df.variable == "u"].sort_values("message_index")["value"].to_numpy()
    v = df[df.variable == "v"].sort_values("message_index")["value"].to_numpy()
    np.testing.assert_allclose(np.hypot(u, v), ref["windSpeed"].to_numpy(), atol=1e-9)
    # Meteorological convention: direction the wind blows from.
    np.testing.assert_allclose(np.mod(np.degrees(np.arctan2(-u, -v)), 360.0), ref["windDirection"].to_numpy() % 360,
                               atol=1e-6)


def test_hirs_compressed_radiances(bufr_dir: Path) -> None:
    import eccodes as ec

    path = bufr_dir / "metop-a_hirs_l1b_20181122.bufr"
    raw, _ = split_messages(path)
    res = reader_for(path).read_messages(str(path), raw[:2])
    df = res.table.to_pandas()
    assert set(df.vertical_kind) == {"channel"} and set(df.vertical.astype(int)) == set(range(1, 20))
    assert df.instrument.iloc[0] == "hirs"
    h = ec.codes_new_from_message(raw[0].data)
    ec.codes_set(h, "unpack", 1)
    ref_bt = ec.codes_get_array(h, "#5#brightnessTemperature")
    ref_lat = ec.codes_get_array(h, "latitude")
    ec.codes_release(h)
    got = df[(df.message_index == 0) & (df.vertical == 5)].sort_values("subset_index")
    assert len(got) == len(ref_bt) == 1008
    np.testing.assert_allclose(got["value"].to_numpy(), ref_bt)
    np.testing.assert_allclose(got["latitude"].to_numpy(), ref_lat)


def test_ground_gnss_and_tropical_cyclone(bufr_dir: Path) -> None:
    import eccodes as ec

    path = bufr_dir / "pgps_110.bufr"
    df = reader_for(path).read(path).table.to_pandas()
    ztd = df[df.variable == "zenith_total_delay"].sort_values("subset_index")
    raw, _ = split_messages(path)
    h = ec.codes_new_from_message(raw[0].data)
    ec.codes_set(h, "unpack", 1)
    ref = ec.codes_get_array(h, "#1#atmosphericPathDelayInSatelliteSignal")
    ec.codes_release(h)
    np.testing.assert_allclose(ztd["value"].to_numpy(), ref)
    assert (df.report_type == "gnss_ground").all()

    path = bufr_dir / "tropical_cyclone.bufr"
    df = reader_for(path).read(path).table.to_pandas()
    p = df[df.variable == "tc_pressure"]
    assert p.value.between(95000, 101500).all() and p.station_id.str.startswith("27W").any()
    assert (p.time == pd.Timestamp("2015-11-18T00:00")).all()
