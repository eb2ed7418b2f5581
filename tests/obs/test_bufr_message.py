"""Message access on multi-subset BUFR: whole-array indexing agrees with the per-subset definition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fuxiops.pipeline.obs.bufr import Message, split_messages
from fuxiops.pipeline.obs.encode import write_bufr

KEYS = ("latitude", "longitude", "airTemperature", "pressure", "windSpeed", "stationNumber", "year", "minute",
        "brightnessTemperature", "channelNumber", "satelliteIdentifier")


def _per_subset(msg: Message, key: str) -> list[np.ndarray] | None:
    """The definition: each subset's occurrences of ``key``, read through its element ranks."""
    a = msg._get(key, False)
    if a is None or not any(key in s for s in msg._ranks):
        return None
    a = msg._finish(a, False)
    return [a[np.asarray(s.get(key, []), dtype=np.int64) - 1] for s in msg._ranks]


def _check(msg: Message) -> int:
    checked = 0
    for key in KEYS:
        ref = _per_subset(msg, key) if msg.has(key) else None
        got = msg.values(key)
        if ref is None:
            assert got is None and msg.first(key) is None and msg.values_2d(key) is None, key
            continue
        assert got is not None and len(got) == len(ref) == msg.n_subsets
        for g, r in zip(got, ref):
            np.testing.assert_array_equal(g, r)
        first = np.array([r[0] if len(r) else np.nan for r in ref])
        np.testing.assert_array_equal(msg.first(key), first)
        two = msg.values_2d(key)
        if len({len(r) for r in ref}) == 1:
            np.testing.assert_array_equal(two, np.stack(ref))
        else:
            assert two is None  # ragged: only per-subset arrays
        checked += 1
    return checked


def test_real_uncompressed_multi_subset_synop(bufr_dir: Path) -> None:
    raw, _ = split_messages(bufr_dir / "synop_multi_subset_uncompressed.bufr")
    checked = 0
    for m in raw:
        with Message(m.data) as msg:
            assert msg.n_subsets > 1 and not msg.compressed
            checked += _check(msg)
    assert checked >= 5


@pytest.mark.parametrize("compressed", [False, True])
def test_written_radiances_as_matrices(tmp_path: Path, compressed: bool) -> None:
    rng = np.random.default_rng(1)
    n, nch = 40, 15
    path = tmp_path / "mwts_2023010100.bufr"
    write_bufr(path, "mwts", dict(year=[2023] * n, month=[1] * n, day=[1] * n, hour=[0] * n, minute=rng.integers(0, 59, n),
                                  latitude=rng.uniform(-80, 80, n), longitude=rng.uniform(0, 360, n),
                                  satelliteIdentifier=[3 + i % 2 for i in range(n)]),
               dict(channelNumber=np.tile(np.arange(1, nch + 1), (n, 1)),
                    brightnessTemperature=rng.uniform(200, 280, (n, nch))),
               compressed=compressed, subsets_per_message=n)
    (m,), _ = split_messages(path)
    with Message(m.data) as msg:
        assert msg.compressed == compressed and msg.n_subsets == n
        bt = msg.values_2d("brightnessTemperature")
        assert bt.shape == (n, nch)
        np.testing.assert_array_equal(msg.values_2d("channelNumber"), np.tile(np.arange(1, nch + 1), (n, 1)))
        np.testing.assert_array_equal(msg.first("satelliteIdentifier"), [3 + i % 2 for i in range(n)])
        if not compressed:
            assert _check(msg) >= 5


def test_ragged_uncompressed_profiles(tmp_path: Path) -> None:
    """Subsets with different replication counts: per-subset arrays, no matrix, ``first`` per subset."""
    import eccodes as ec

    from fuxiops.pipeline.obs.encode import TEMPLATES

    counts = [3, 1, 4, 2]
    ns = len(counts)
    h = ec.codes_bufr_new_from_samples("BUFR4")
    try:
        for key, val in (("masterTablesVersionNumber", 29), ("dataCategory", 3), ("numberOfSubsets", ns),
                         ("observedData", 1), ("compressedData", 0)):
            ec.codes_set(h, key, val)
        ec.codes_set_array(h, "inputExtendedDelayedDescriptorReplicationFactor", counts)
        ec.codes_set_array(h, "unexpandedDescriptors", TEMPLATES["gnssro"][0])
        for key, vals in (("satelliteIdentifier", [3, 4, 5, 6]), ("year", [2023] * ns), ("month", [1] * ns),
                          ("day", [1] * ns), ("hour", [0] * ns), ("minute", [0, 1, 2, 3]),
                          ("latitude", [10.0, 20.0, 30.0, 40.0]), ("longitude", [1.0, 2.0, 3.0, 4.0])):
            ec.codes_set_array(h, key, [float(v) for v in vals])
        heights = [1000.0 * (s + 1) + k for s, c in enumerate(counts) for k in range(c)]
        ec.codes_set_array(h, "height", heights)
        ec.codes_set_array(h, "atmosphericRefractivity", [300.0 - x / 100 for x in heights])
        ec.codes_set(h, "pack", 1)
        path = tmp_path / "gnssro.bufr"
        with open(path, "wb") as f:
            ec.codes_write(h, f)
    finally:
        ec.codes_release(h)
    (m,), _ = split_messages(path)
    with Message(m.data) as msg:
        got = msg.values("height")
        assert [len(g) for g in got] == counts
        np.testing.assert_array_equal(np.concatenate(got), heights)
        np.testing.assert_array_equal(msg.first("height"), [1000.0, 2000.0, 3000.0, 4000.0])
        assert msg.values_2d("height") is None
        np.testing.assert_allclose(msg.values_2d("latitude")[:, 0], [10.0, 20.0, 30.0, 40.0])
        assert _check(msg) >= 4
