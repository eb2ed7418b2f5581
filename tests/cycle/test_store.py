"""State store (atomic Zarr commits), run work directory (lead checkpoints), cycle lock and cycle times."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from fuxiops.catalog import VariableSet
from fuxiops.grids import get_grid
from fuxiops.pipeline.cycle.lock import LockTimeout, cycle_lock
from fuxiops.pipeline.cycle.steps import state_array, state_dataset
from fuxiops.pipeline.cycle.store import StateStore
from fuxiops.pipeline.cycle.times import CycleTimeError, cycles_between, latest_due_cycle, parse_cycle_time
from fuxiops.pipeline.cycle.workdir import RunWorkDir, fingerprint

VS = VariableSet(upper_air=("z", "t"), levels=(500, 850), surface=("t2m",), diagnostics=())
GRID = get_grid("11.25deg")
T = datetime(2023, 1, 1, 6)


def _state(seed: int) -> xr.Dataset:
    arr = np.random.default_rng(seed).normal(size=(5, *GRID.shape)).astype(np.float32)
    return state_dataset(arr, VS, GRID, T)


@pytest.mark.parametrize("url_kind", ["path", "memory"])
def test_store_commit_and_overwrite(tmp_path: Path, url_kind: str) -> None:
    url = str(tmp_path / "state") if url_kind == "path" else f"memory://fuxiops-test-{time.time_ns()}/state"
    store = StateStore(url)
    assert store.get("background", T) is None and store.cycles("background") == []
    a, b = _state(1), _state(2)
    store.put("background", T, a, source="cold start: reanalysis")
    got = store.get("background", T)
    np.testing.assert_array_equal(state_array(got, VS, GRID), state_array(a, VS, GRID))
    assert store.pointer("background", T)["provenance"]["source"] == "cold start: reanalysis"
    store.put("background", T, b)
    np.testing.assert_array_equal(state_array(store.get("background", T), VS, GRID), state_array(b, VS, GRID))
    assert store.cycles("background") == ["2023010106"]
    # Superseded versions are pruned: one version left.
    d = f"{store.root}/background/2023010106"
    assert sum(str(p).endswith(".zarr") for p in store.fs.ls(d, detail=False)) == 1


def test_failed_write_keeps_the_committed_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = StateStore(str(tmp_path / "state"))
    good = _state(1)
    store.put("background", T, good)

    def crash(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003 - dies half-way through writing
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_zarr", crash)
    with pytest.raises(OSError, match="disk full"):
        store.put("background", T, _state(2))
    monkeypatch.undo()
    np.testing.assert_array_equal(state_array(store.get("background", T), VS, GRID), state_array(good, VS, GRID))


def test_workdir_resume_and_fingerprint(tmp_path: Path) -> None:
    wd = RunWorkDir(str(tmp_path / "runs"), "2023010106")
    x = np.arange(10, dtype=np.float32)
    fp = fingerprint(x, model={"sha": "a"})
    assert wd.prepare(fp) == 0
    for k in (1, 2, 4):  # a gap: lead 3 never completed
        wd.save_lead(k, x * k)
    assert wd.completed_leads() == [1, 2]
    assert wd.prepare(fp) == 2 and wd.completed_leads() == [1, 2]
    np.testing.assert_array_equal(wd.load_lead(2), x * 2)
    # Other inputs: checkpoints of another forecast are never reused.
    assert wd.prepare(fingerprint(x + 1, model={"sha": "a"})) == 0
    assert wd.completed_leads() == []


_HOLD = """
import sys, time
from fuxiops.pipeline.cycle.lock import cycle_lock
with cycle_lock(sys.argv[1], sys.argv[2]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def test_cycle_lock_excludes_and_waits(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path}/c.sqlite"
    # Another process holds the lock (a subprocess, not a fork of this multi-threaded test process).
    p = subprocess.Popen([sys.executable, "-c", _HOLD, url, str(tmp_path), "1.5"], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "locked"
        with pytest.raises(LockTimeout):
            with cycle_lock(url, str(tmp_path), timeout_s=0.3, poll_s=0.05):
                pass
        t0 = time.monotonic()
        with cycle_lock(url, str(tmp_path), timeout_s=60, poll_s=0.05):
            waited = time.monotonic() - t0
    finally:
        p.wait(timeout=60)
    assert waited > 0.3 and p.returncode == 0


def test_cycle_times() -> None:
    assert parse_cycle_time("2023-01-01T06") == T
    assert parse_cycle_time("2023010106") == T
    assert parse_cycle_time("2023-01-01T06:00:00Z") == T
    with pytest.raises(CycleTimeError, match="not on the 6-hourly cadence"):
        parse_cycle_time("2023-01-01T05")
    with pytest.raises(CycleTimeError, match="cannot parse"):
        parse_cycle_time("yesterday")
    assert cycles_between(T, datetime(2023, 1, 2, 0)) == [T, datetime(2023, 1, 1, 12), datetime(2023, 1, 1, 18),
                                                          datetime(2023, 1, 2, 0)]
    with pytest.raises(CycleTimeError, match="before its start"):
        cycles_between(T, datetime(2023, 1, 1, 0))
    # 02:29 with a 150-min cutoff: the 00 UTC cycle is not due yet, 18 UTC is.
    assert latest_due_cycle(datetime(2023, 1, 1, 2, 29), 150) == datetime(2022, 12, 31, 18)
    assert latest_due_cycle(datetime(2023, 1, 1, 2, 30), 150) == datetime(2023, 1, 1, 0)
