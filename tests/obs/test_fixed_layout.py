"""The fixed-layout fast path gives exactly the observation table of the pure ecCodes path, and steps aside safely."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pytest

from fuxiops.pipeline.obs import fixed_layout
from fuxiops.pipeline.obs.bufr import Message, RawMessage, split_messages
from fuxiops.pipeline.obs.decode import decode_files, plan_inputs
from fuxiops.pipeline.obs.readers import READERS, reader_name_for
from fuxiops.pipeline.obs.readers.base import ReadResult

from .conftest import BUFR_FILES


@pytest.fixture(autouse=True)
def fresh_layouts() -> Iterator[None]:
    """Each test learns its layouts from scratch (and leaves no rejected template behind)."""
    fixed_layout.reset()
    yield
    fixed_layout.reset()


def read(path: Path, fast: bool, reader: str | None = None) -> ReadResult:
    return READERS.create({reader or reader_name_for(path): {"fast_path": fast}}).read(path)


def assert_identical(a: ReadResult, b: ReadResult) -> None:
    """Same rows in the same order, bit-identical values (NaN included), same quarantine and counts."""
    assert a.table.schema == b.table.schema
    assert a.table.num_rows == b.table.num_rows
    for name in a.table.column_names:
        x = a.table.column(name).to_numpy(zero_copy_only=False)
        y = b.table.column(name).to_numpy(zero_copy_only=False)
        if x.dtype.kind == "f":
            # Compare bits: equal values and equal NaNs, no tolerance.
            x, y = x.view(np.int64 if x.itemsize == 8 else np.int32), y.view(np.int64 if y.itemsize == 8 else np.int32)
        assert np.array_equal(x, y), f"column {name} differs"
    assert [q.to_dict() for q in a.quarantined] == [q.to_dict() for q in b.quarantined]
    assert (a.n_messages, a.n_subsets, a.skipped) == (b.n_messages, b.n_subsets, b.skipped)


def write(path: Path, msgs: list[bytes]) -> Path:
    path.write_bytes(b"".join(msgs))
    return path


def _fast_and_slow(path: Path) -> tuple[ReadResult, ReadResult]:
    """Read a file through decode_files (its batching) with and without the fast path."""
    inputs, _ = plan_inputs([path])
    fast = decode_files(inputs, mode="serial")[str(path)]
    n_fast = fixed_layout.STATS["fast_messages"]
    slow = decode_files([type(inputs[0])(inputs[0].path, inputs[0].reader, (("fast_path", False),))],
                        mode="serial")[str(path)]
    assert fixed_layout.STATS["fast_messages"] == n_fast  # the option really switches it off
    return fast, slow


def test_perf_synop_slice_identical_to_eccodes(bufr_dir: Path, tmp_path: Path) -> None:
    """4,000 messages of the real SYNOP feed (all its templates): one table either way."""
    raw = split_messages(bufr_dir / "perf_synop.bufr")[0][:4000]
    path = write(tmp_path / "synop_slice.bufr", [m.data for m in raw])
    fast, slow = _fast_and_slow(path)
    # Every template has a fixed layout: only templates seen once in a batch go to ecCodes.
    assert fixed_layout.STATS["fast_messages"] > 3990 and fixed_layout.STATS["returned_messages"] == 0
    assert_identical(fast, slow)
    assert fast.table.num_rows > 10000 and not fast.quarantined


@pytest.mark.slow
def test_perf_synop_identical_to_eccodes(bufr_dir: Path) -> None:
    """The whole 15,824-message file (the ecCodes side takes several CPU seconds)."""
    fast, slow = _fast_and_slow(bufr_dir / "perf_synop.bufr")
    assert fixed_layout.STATS["fast_messages"] > 15800 and fixed_layout.STATS["returned_messages"] == 0
    assert_identical(fast, slow)
    assert fast.table.num_rows > 40000 and not fast.quarantined


@pytest.mark.parametrize("name", [n for n in BUFR_FILES if n not in ("perf_synop.bufr", "temp.bufr")])
def test_every_real_sample_identical(bufr_dir: Path, name: str, tmp_path: Path) -> None:
    """Whatever the reader and layout (temp.bufr: see test_delayed_replication_is_not_fixed)."""
    path = bufr_dir / name
    if name.startswith("metop"):
        path = write(tmp_path / name, [m.data for m in split_messages(path)[0][:3]])
    assert_identical(read(path, True), read(path, False))


def test_every_element_of_every_message_equals_eccodes(bufr_dir: Path) -> None:
    """Decoder level: every readable key of each template, on 1 message in 20 of perf_synop, equals ecCodes."""
    raw = split_messages(bufr_dir / "perf_synop.bufr")[0][::20]
    groups, rest = fixed_layout.plan(raw)
    assert groups and not rest
    checked = 0
    for g in groups:
        layout = fixed_layout.layout_for(g.header, g.messages[0])
        assert isinstance(layout, fixed_layout.Layout), layout
        with fixed_layout.FixedBatch(layout, g.messages, g.headers) as batch:
            ours = {k: batch.values(k, strings=layout.types[p[0]] == "string") for k, p in layout.positions.items()}
        for k, m in enumerate(g.messages):
            with Message(m.data) as msg:
                for key, vals in ours.items():
                    strings = layout.types[layout.positions[key][0]] == "string"
                    ref = msg.values(key, strings=strings)
                    assert ref is not None
                    assert fixed_layout._difference(vals[k], ref[0], strings, many=True) == "", (key, m.index)
                    checked += 1
    assert checked > 10000


def test_testbed_synop_single_subset_messages(tmp_path: Path) -> None:
    """SYNOP written by the testbed encoder (edition 4, one subset per message, missing values)."""
    from fuxiops.pipeline.obs.encode import write_bufr

    n = 80
    rng = np.random.default_rng(3)
    t = rng.normal(280, 5, n)
    t[::7] = np.nan
    wd = rng.uniform(0, 360, n)
    wd[::5] = np.nan
    path = tmp_path / "synop_2023010100.bufr"
    write_bufr(path, "synop", dict(blockNumber=[3] * n, stationNumber=np.arange(n), year=[2023] * n, month=[1] * n,
                                   day=[1] * n, hour=[0] * n, minute=rng.integers(0, 59, n),
                                   latitude=rng.uniform(-80, 80, n), longitude=rng.uniform(-180, 180, n),
                                   heightOfStationGroundAboveMeanSeaLevel=rng.uniform(0, 3000, n), airTemperature=t,
                                   pressureReducedToMeanSeaLevel=rng.normal(101000, 500, n), windDirection=wd,
                                   windSpeed=rng.uniform(0, 10, n)),
               compressed=False, subsets_per_message=1)
    fast = read(path, True)
    assert fixed_layout.STATS["fast_messages"] == n
    slow = read(path, False)
    assert_identical(fast, slow)
    assert set(fast.table.column("variable").to_pylist()) >= {"t2m", "msl", "u10", "v10"}
    tab = fast.table.filter(pa.compute.equal(fast.table.column("variable"), "t2m"))
    assert tab.column("message_index").to_pylist() == np.flatnonzero(np.isfinite(t)).tolist()
    assert np.allclose(tab.column("value").to_numpy(), t[np.isfinite(t)], atol=0.006)


def test_corrupted_message_in_the_middle(bufr_dir: Path, tmp_path: Path) -> None:
    """A broken message among same-template ones is quarantined as before; every other one decodes identically."""
    raw = split_messages(bufr_dir / "perf_synop.bufr")[0][:400]
    data = [m.data for m in raw]
    clean = read(write(tmp_path / "synop_clean.bufr", data), False)
    with_rows = set(clean.table.column("message_index").to_pylist())
    longer = next(i for i in range(300, 400) if i in with_rows)
    # 150 loses its end section (split problem); 250 gets a garbled descriptor section (ecCodes must judge it);
    # ``longer`` keeps its template but carries 2 extra padding bytes in section 4 (another data length, so
    # it is not of the learned layout: ecCodes reads it).
    data[150] = data[150][:-4] + b"XXXX"
    g = bytearray(data[250])
    g[len(g) // 3:len(g) // 3 + 12] = b"\xff" * 12
    data[250] = bytes(g)
    hd = fixed_layout.parse_header(data[longer])
    assert hd is not None
    m = bytearray(data[longer])
    s4 = hd.data_start - 4
    m[s4:s4 + 3] = (hd.data_len + 6).to_bytes(3, "big")
    m[4:7] = (len(m) + 2).to_bytes(3, "big")
    data[longer] = bytes(m[:-4]) + b"\x00\x00" + b"7777"
    path = write(tmp_path / "synop_broken.bufr", data)
    fast = read(path, True)
    assert fixed_layout.STATS["returned_messages"] == 1  # the longer message went to ecCodes
    slow = read(path, False)
    assert_identical(fast, slow)
    assert 150 in [q.message_index for q in fast.quarantined]
    assert longer in fast.table.column("message_index").to_pylist()
    # Apart from the two broken messages, the rows are those of the clean file.
    keep = pa.compute.invert(pa.compute.is_in(clean.table.column("message_index"), pa.array([150, 250], pa.int32())))
    assert fast.table.num_rows == clean.table.filter(keep).num_rows


def test_temp_delayed_replication_identical_to_eccodes(bufr_dir: Path) -> None:
    """TEMP profiles (delayed replication, variable level counts): one table either way, most messages fast."""
    fast, slow = _fast_and_slow(bufr_dir / "temp.bufr")
    # Messages with extra bytes after their data (section 4 longer than the structure) go to ecCodes.
    assert fixed_layout.STATS["fast_messages"] > 300
    assert fixed_layout.STATS["fast_messages"] + fixed_layout.STATS["returned_messages"] == 420
    assert_identical(fast, slow)
    assert fast.table.num_rows > 70000 and not fast.quarantined


def test_temp_every_level_value_equals_eccodes(bufr_dir: Path) -> None:
    """Decoder level: every readable key of each TEMP template, per message (variable lengths), equals ecCodes."""
    raw = split_messages(bufr_dir / "temp.bufr")[0][:60]
    groups, rest = fixed_layout.plan(raw)
    assert groups and not rest
    checked = n_back = 0
    for g in groups:
        layout = fixed_layout.layout_for(g.header, g.messages[0])
        assert isinstance(layout, fixed_layout.VarLayout), layout
        batch, back = fixed_layout.make_batch(layout, g.messages, g.headers)
        assert batch is not None
        n_back += len(back)
        with batch:
            ours = {k: batch.values(k) for k in layout.positions}
        for k, m in enumerate(batch.messages):
            with Message(m.data) as msg:
                for key, vals in ours.items():
                    ref = msg.values(key)
                    assert ref is not None
                    assert fixed_layout._difference(vals[k], ref[0], False, many=True) == "", (key, m.index)
                    checked += 1
    assert checked > 1000 and n_back < len(raw) // 3


@pytest.mark.parametrize("count_bit", [1, 0])
def test_temp_corrupted_messages_in_the_middle(bufr_dir: Path, tmp_path: Path, count_bit: int) -> None:
    """Broken TEMP messages among good ones: same quarantines and rows as ecCodes alone."""
    data = [m.data for m in split_messages(bufr_dir / "temp.bufr")[0][:90]]
    groups, _ = fixed_layout.plan(split_messages(bufr_dir / "temp.bufr")[0][:90])
    g = max(groups, key=lambda g: len(g.messages))
    layout = fixed_layout.layout_for(g.header, g.messages[0])
    assert isinstance(layout, fixed_layout.VarLayout)
    # 20 loses its end section (split problem); the level count of the big group's first message is set
    # to all ones (missing) or zero (no levels): ecCodes must judge it, and the next message teaches the
    # layout; 60 gets
    # garbled descriptors.
    hd, target = g.headers[0], g.messages[0].index
    starts, _ = fixed_layout.walk_message(layout, data[target], hd, strict=False)  # type: ignore[misc]
    rep = next(i for i, nd in enumerate(layout.data_nodes) if nd.kind == "rep")
    off, w = starts[rep], layout.data_nodes[rep].width
    body = np.unpackbits(np.frombuffer(data[target][hd.data_start:hd.data_start + hd.data_len], np.uint8))
    body[off:off + w] = count_bit
    data[target] = data[target][:hd.data_start] + np.packbits(body).tobytes() + data[target][hd.data_start
                                                                                            + hd.data_len:]
    data[20] = data[20][:-4] + b"XXXX"
    g60 = bytearray(data[60])
    g60[len(g60) // 3:len(g60) // 3 + 12] = b"\xff" * 12
    data[60] = bytes(g60)
    fixed_layout.reset()
    path = write(tmp_path / "temp_broken.bufr", data)
    fast, slow = _fast_and_slow(path)
    assert fixed_layout.STATS["fast_messages"] > 50
    assert_identical(fast, slow)
    assert 20 in [q.message_index for q in fast.quarantined]
    rows = set(fast.table.column("message_index").to_pylist())
    assert {19, 21, 59, 61, 89} - {target} <= rows
    assert isinstance(fixed_layout._LAYOUTS[g.header.key], fixed_layout.VarLayout)


def test_testbed_temp_single_subset_messages(tmp_path: Path) -> None:
    """TEMP written by the testbed encoder (edition 4, one subset per message, varying level counts, gaps)."""
    from fuxiops.pipeline.obs.encode import write_bufr

    n = 24
    rng = np.random.default_rng(7)
    lev = np.array([100000.0, 85000.0, 70000.0, 50000.0, 25000.0, 10000.0])
    paths = []
    for k, nlev in enumerate((6, 4, 6)):  # two level counts of one template in one file
        t = np.tile([288.0, 280, 270, 250, 220, 210][:nlev], (n, 1)) + rng.normal(0, 1, (n, nlev))
        t[3, 1] = np.nan
        part = tmp_path / f"part{k}.bufr"
        write_bufr(part, "temp", dict(blockNumber=[2] * n, stationNumber=np.arange(n) + 100 * k, year=[2023] * n,
                                      month=[1] * n, day=[1] * n, hour=[0] * n, minute=rng.integers(0, 59, n),
                                      latitude=rng.uniform(-80, 80, n), longitude=rng.uniform(0, 360, n)),
                   dict(pressure=np.tile(lev[:nlev], (n, 1)), airTemperature=t,
                        nonCoordinateGeopotentialHeight=np.tile([100.0, 1500, 3000, 5500, 10000, 16000][:nlev], (n, 1)),
                        windDirection=rng.uniform(0, 360, (n, nlev)), windSpeed=rng.uniform(0, 30, (n, nlev))),
                   compressed=False, subsets_per_message=1)
        paths.append(part)
    path = write(tmp_path / "temp_2023010100.bufr", [p.read_bytes() for p in paths])
    fast = read(path, True)
    assert fixed_layout.STATS["fast_messages"] == 3 * n
    slow = read(path, False)
    assert_identical(fast, slow)
    assert fast.table.num_rows > 3 * n * 4 * 4


def test_temp_wrong_layout_is_detected_and_falls_back(bufr_dir: Path, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A learned replicated layout with a wrong scale never reaches the table: the template goes to ecCodes."""
    path = write(tmp_path / "temp_part.bufr", [m.data for m in split_messages(bufr_dir / "temp.bufr")[0][:60]])
    raw = split_messages(path)[0]
    groups, _ = fixed_layout.plan(raw)
    big = max(groups, key=lambda g: len(g.messages))
    layout = fixed_layout.layout_for(big.header, big.messages[0])
    assert isinstance(layout, fixed_layout.VarLayout)
    i = layout.positions["pressure"][0]
    layout.scales[i] += 1  # pressures ten times too small
    with caplog.at_level(logging.WARNING, logger="fuxiops.obs.fixed_layout"):
        fast = read(path, True)
    assert any("fast path disabled" in r.getMessage() and "pressure" in r.getMessage() for r in caplog.records)
    assert str(fixed_layout._LAYOUTS[big.header.key]).startswith("rejected")
    assert_identical(fast, read(path, False))


def test_replicated_templates_only_for_readers_that_opt_in(bufr_dir: Path) -> None:
    """A reader without ``fast_path_replication`` never gets a variable-length batch: all go to ecCodes."""
    from fuxiops.pipeline.obs.readers.amdar import AmdarReader
    from fuxiops.pipeline.obs.readers.temp import TempReader

    assert TempReader.fast_path_replication and not AmdarReader.fast_path_replication

    class NoReplication(TempReader):
        fast_path_replication = False

    raw = split_messages(bufr_dir / "temp.bufr")[0][:10]
    groups, _ = fixed_layout.plan(raw)
    reader = NoReplication()
    reader.begin_batch()
    for g in groups:
        back = reader._read_group("temp.bufr", g, reader.builder("temp.bufr"), [], {})
        assert back == g.messages


def test_wrong_layout_is_detected_and_falls_back(bufr_dir: Path, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """A learned layout with a wrong scale never reaches the table: the template is routed to ecCodes."""
    path = write(tmp_path / "synop_part.bufr", [m.data for m in split_messages(bufr_dir / "perf_synop.bufr")[0][:300]])
    raw = split_messages(path)[0]
    groups, _ = fixed_layout.plan(raw)
    with_rows = set(read(path, False).table.column("message_index").to_pylist())
    big = max((g for g in groups if g.messages[0].index in with_rows), key=lambda g: len(g.messages))
    fixed_layout.reset()
    layout = fixed_layout.layout_for(big.header, big.messages[0])
    assert isinstance(layout, fixed_layout.Layout)
    i = layout.positions["latitude"][0]
    layout.scales[i] += 1  # latitude ten times too small
    with caplog.at_level(logging.WARNING, logger="fuxiops.obs.fixed_layout"):
        fast = read(path, True)
    assert any("fast path disabled" in r.getMessage() and "latitude" in r.getMessage() for r in caplog.records)
    assert str(fixed_layout._LAYOUTS[big.header.key]).startswith("rejected")
    assert fixed_layout.STATS["returned_messages"] >= len(big.messages)
    assert_identical(fast, read(path, False))


def test_environment_switch(bufr_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "synop_part.bufr", [m.data for m in split_messages(bufr_dir / "perf_synop.bufr")[0][:100]])
    monkeypatch.setenv(fixed_layout.FAST_ENV, "0")
    slow = read(path, True)
    assert fixed_layout.STATS["fast_messages"] == 0
    monkeypatch.delenv(fixed_layout.FAST_ENV)
    assert_identical(read(path, True), slow)
    assert fixed_layout.STATS["fast_messages"] > 0


def test_header_parse_agrees_with_eccodes(bufr_dir: Path, testbed_files: dict[str, Path], tmp_path: Path) -> None:
    """The template key read from the bytes holds what ecCodes reads (tables, centre, category, descriptors)."""
    from fuxiops.pipeline.obs.encode import write_bufr

    single = tmp_path / "amdar_single.bufr"  # edition 4, one subset per message
    write_bufr(single, "amdar", dict(aircraftRegistrationNumberOrOtherIdentification=["A1", "B2"], year=[2023] * 2,
                                     month=[1] * 2, day=[1] * 2, hour=[0] * 2, minute=[0, 1], latitude=[1.0, 2.0],
                                     longitude=[3.0, 4.0], flightLevel=[1000.0, 2000.0], airTemperature=[250.0, 251.0],
                                     windDirection=[10.0, 20.0], windSpeed=[5.0, 6.0]),
               compressed=False, subsets_per_message=1)
    files = [bufr_dir / n for n in BUFR_FILES] + list(testbed_files.values()) + [single]
    seen = set()
    for path in files:
        for m in split_messages(path)[0][:5]:
            hd = fixed_layout.parse_header(m.data)
            with Message(m.data, unpack=False) as msg:
                if msg.n_subsets != 1 or msg.compressed or msg.edition not in (3, 4):
                    assert hd is None
                    continue
                assert hd is not None, path
                seen.add(msg.edition)
                assert hd.template == msg.template and hd.data_category == msg.data_category
                assert hd.data_len == int(msg.header("section4Length")) - 4
                ed, master, centre, sub, mver, lver, cat = hd.key[:7]
                assert (ed, master, centre, sub, mver, lver) == tuple(int(msg.header(k)) for k in (
                    "edition", "masterTableNumber", "bufrHeaderCentre", "bufrHeaderSubCentre",
                    "masterTablesVersionNumber", "localTablesVersionNumber"))
    assert seen == {3, 4}


def test_packed_batches_round_trip(bufr_dir: Path) -> None:
    """Batches shipped to Dask workers as one byte string come back as the same messages."""
    from fuxiops.pipeline.obs.decode import PackedMessages

    raw = split_messages(bufr_dir / "aircraft_small.bufr")[0]
    assert PackedMessages(raw).unpack() == raw
    assert PackedMessages([]).unpack() == []


def test_cross_check_sample_rows(bufr_dir: Path) -> None:
    """The first message of a group and every CHECK_EVERY-th message of the file are checked against ecCodes."""
    raw = split_messages(bufr_dir / "perf_synop.bufr")[0][:2500]
    groups, _ = fixed_layout.plan(raw)
    for g in groups:
        layout = fixed_layout.layout_for(g.header, g.messages[0])
        assert isinstance(layout, fixed_layout.Layout)
        batch = fixed_layout.FixedBatch(layout, g.messages, g.headers)
        want = {0} | {k for k, m in enumerate(g.messages) if m.index in (0, 1000, 2000)}
        assert set(batch._check_rows) == want


def _string_messages(tmp_path: Path) -> tuple[list[RawMessage], str]:
    from fuxiops.pipeline.obs.encode import write_bufr

    key = "aircraftRegistrationNumberOrOtherIdentification"
    n = 5
    path = tmp_path / "amdar_strings.bufr"
    write_bufr(path, "amdar", {key: ["AB1", "", "C D ", "X" * 8, "Q"], "year": [2023] * n, "month": [1] * n,
                               "day": [1] * n, "hour": [0] * n, "minute": [0, 1, 2, 3, 4],
                               "latitude": np.linspace(-10, 10, n), "longitude": np.linspace(0, 40, n),
                               "flightLevel": np.full(n, 9000.0), "airTemperature": [230.0, np.nan, 231, 232, 233],
                               "windDirection": np.full(n, 90.0), "windSpeed": np.full(n, 20.0)},
               compressed=False, subsets_per_message=1)
    return split_messages(path)[0], key


def _set_string(layout: fixed_layout.Layout, hd: fixed_layout.Header, data: bytes, key: str, text: bytes) -> bytes:
    """Write ``text`` (padded with 0xFF to the element width) into the element's bits of one message."""
    i = layout.positions[key][0]
    off, w = int(layout.offsets[i]), int(layout.widths[i])
    body = np.frombuffer(data[hd.data_start:hd.data_start + hd.data_len], np.uint8)
    bits = np.unpackbits(body)
    bits[off:off + w] = np.unpackbits(np.frombuffer(text.ljust(w // 8, b"\xff"), np.uint8))
    return data[:hd.data_start] + np.packbits(bits).tobytes() + data[hd.data_start + hd.data_len:]


def test_strings_match_eccodes_and_odd_bytes_go_to_eccodes(tmp_path: Path) -> None:
    """Text elements (padding, missing = all ones, NUL-terminated) equal ecCodes'; control bytes are not guessed."""
    raw, key = _string_messages(tmp_path)
    groups, rest = fixed_layout.plan(raw)
    assert len(groups) == 1 and not rest
    g = groups[0]
    layout = fixed_layout.layout_for(g.header, g.messages[0])
    assert isinstance(layout, fixed_layout.Layout)
    msgs = list(g.messages)
    msgs[1] = RawMessage(1, 0, _set_string(layout, g.headers[1], msgs[1].data, key, b""))         # missing
    msgs[4] = RawMessage(4, 0, _set_string(layout, g.headers[4], msgs[4].data, key, b"ZZ\x00\x00\x00\x00\x00\x00"))
    with fixed_layout.FixedBatch(layout, msgs, g.headers) as batch:
        batch._check_rows = list(range(len(msgs)))  # check every message against ecCodes
        got = batch.first(key, strings=True)
        t = batch.first("airTemperature")
    assert list(got) == ["AB1", "", "C D", "XXXXXXXX", "ZZ"]
    assert np.isnan(t[1]) and t[0] == 230.0
    msgs[2] = RawMessage(2, 0, _set_string(layout, g.headers[2], msgs[2].data, key, b"A\x07B"))
    with fixed_layout.FixedBatch(layout, msgs, g.headers) as batch:
        with pytest.raises(fixed_layout.UnusualData):
            batch.first(key, strings=True)
    assert isinstance(fixed_layout._LAYOUTS[g.header.key], fixed_layout.Layout)  # not rejected: data, not layout


def test_amdar_batch_quarantines_reports_without_pressure(tmp_path: Path) -> None:
    """A reader's per-message verdicts inside a fast batch: the same messages quarantined, the rest identical."""
    from fuxiops.pipeline.obs.encode import write_bufr

    n = 40
    rng = np.random.default_rng(5)
    fl_ = rng.uniform(1000, 11000, n)
    fl_[[3, 17, 18]] = np.nan  # no flight level and no pressure: quarantined one by one
    path = tmp_path / "amdar_2023010100.bufr"
    write_bufr(path, "amdar", dict(aircraftRegistrationNumberOrOtherIdentification=[f"AC{i}" for i in range(n)],
                                   year=[2023] * n, month=[1] * n, day=[1] * n, hour=[0] * n,
                                   minute=rng.integers(0, 59, n), latitude=rng.uniform(-60, 60, n),
                                   longitude=rng.uniform(0, 360, n), flightLevel=fl_,
                                   airTemperature=rng.normal(230, 5, n), windDirection=rng.uniform(0, 360, n),
                                   windSpeed=rng.uniform(0, 40, n)),
               compressed=False, subsets_per_message=1)
    fast = read(path, True)
    assert fixed_layout.STATS["fast_messages"] == n  # judged on the fast path too, without ecCodes
    slow = read(path, False)
    assert_identical(fast, slow)
    assert [q.message_index for q in fast.quarantined] == [3, 17, 18]
    assert "without pressure" in fast.quarantined[0].reason
