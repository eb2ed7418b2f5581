"""Bad input is quarantined with a reason; everything else is still read; raw files are never modified."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fuxiops.pipeline.obs.bufr import split_messages
from fuxiops.pipeline.obs.readers import reader_for


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def aircraft(bufr_dir: Path, tmp_path: Path) -> Path:
    p = tmp_path / "amdar_good.bufr"
    p.write_bytes((bufr_dir / "aircraft_small.bufr").read_bytes())
    return p


def test_truncated_and_corrupted_messages(aircraft: Path, tmp_path: Path) -> None:
    raw, _ = split_messages(aircraft)
    data = [m.data for m in raw]
    # Message 3 loses its end section, message 6 has a garbled data section, the file is cut inside message 9.
    bad7777 = data[3][:-4] + b"XXXX"
    garbled = bytearray(data[6])
    garbled[40:60] = b"\xff" * 20
    trunc = tmp_path / "amdar_broken.bufr"
    trunc.write_bytes(b"".join(data[:3]) + bad7777 + b"".join(data[4:6]) + bytes(garbled) + data[7] + data[8]
                      + data[9][: len(data[9]) // 2])
    before = sha(trunc)
    res = reader_for(trunc).read(trunc)
    assert sha(trunc) == before
    reasons = {q.message_index: q.reason for q in res.quarantined}
    assert "7777" in reasons[3]
    assert "truncated" in reasons[9]
    got = set(res.table.column("message_index").to_pylist())
    assert {0, 1, 2, 4, 5, 7, 8} <= got and 3 not in got and 9 not in got
    # A garbled data section either fails to decode (quarantined) or decodes to values QC will judge.
    assert 6 in reasons or 6 in got


def test_empty_text_and_wrong_type_files(bufr_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "synop_empty.bufr"
    empty.write_bytes(b"")
    text = tmp_path / "synop_text.bufr"
    text.write_text("this is not BUFR\n" * 10)
    res = reader_for(empty).read(empty)
    assert res.failed and res.quarantined[0].reason == "empty file"
    res = reader_for(text).read(text)
    assert res.failed and "no BUFR message" in res.quarantined[0].reason
    # A radiosonde file read as SYNOP: every message is quarantined as the wrong report type.
    raw, _ = split_messages(bufr_dir / "temp.bufr")
    wrong = tmp_path / "synop_really_temp.bufr"
    wrong.write_bytes(b"".join(m.data for m in raw[:3]))
    res = reader_for(wrong).read(wrong)
    assert res.table.num_rows == 0 and len(res.quarantined) == 3
    assert all("wrong report type" in q.reason for q in res.quarantined)


def test_csv_station_file_and_missing_coordinates(tmp_path: Path) -> None:
    p = tmp_path / "stations.csv"
    p.write_text("station_id,time,latitude,longitude,t2m,msl,wind_speed,wind_direction\n"
                 "X1,2023-01-01T00:00Z,10,20,280.5,101000,5,90\n"
                 "X2,2023-01-01T01:00Z,,20,281.0,,,\n")
    res = reader_for(p).read(p)
    df = res.table.to_pandas()
    assert set(df.variable) == {"t2m", "msl", "u10", "v10"}
    assert df[df.variable == "u10"].value.iloc[0] == pytest.approx(-5.0)
    assert np.isnan(df[df.station_id == "X2"].latitude).all()  # kept; QC flags MISSING_COORDINATE
    bad = tmp_path / "nocoords.csv"
    bad.write_text("a,b\n1,2\n")
    assert "missing coordinate columns" in reader_for(bad).read(bad).quarantined[0].reason


def test_cli_partial_failure_exits_0_and_total_failure_exits_2(aircraft: Path, tmp_path: Path,
                                                               fuxiops_home: Path) -> None:
    from fuxiops.cli.main import _register_groups, app

    if not any(g.name == "obs" for g in app.registered_groups):
        _register_groups()
    empty = tmp_path / "temp_empty.bufr"
    empty.write_bytes(b"")
    before = {p: sha(p) for p in (aircraft, empty)}
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["obs", "ingest", str(aircraft), str(empty), "--cycle", "2009-01-23T12",
                                 "--out", str(out), "--mode", "serial"])
    assert r.exit_code == 0, r.output
    assert (out / "observations.parquet").is_file() and (out / "qc_report.md").is_file()
    assert (out / "gridded.nc").is_file()
    rep = json.loads((out / "qc_report.json").read_text())
    assert rep["totals"]["files_failed"] == 1 and rep["totals"]["rows"] == 30
    assert any(q["reason"] == "empty file" for q in rep["quarantined"])
    assert {p: sha(p) for p in before} == before
    r = CliRunner().invoke(app, ["obs", "ingest", str(empty), "--cycle", "2009-01-23T12", "--out",
                                 str(tmp_path / "out2"), "--mode", "serial"])
    assert r.exit_code == 2
