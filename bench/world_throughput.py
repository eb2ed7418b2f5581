"""Testbed-world throughput: simulated days per wall-clock minute and memory peak, extrapolated to a year.

Ours vs peer, side by side, at the default grid (2.8125deg):

* **build phases** (a real `build_world` run streaming to Zarr/BUFR, in a child
  process for its memory peak, observations written in-process so each phase
  is timed alone): truth + reanalysis, NWP (2 forecasts of 240 h per day),
  observations (5 types, raw + simulated);
* **whole build**: ours (observations of finished days written by worker
  processes while the models integrate the next days, the default) vs the
  same build with everything in one process; the two worlds are byte-identical;
* **truth core**: ours (one jitted 6-hour function called per output) vs
  dinosaur's idiomatic `trajectory_from_step` (one jitted scan over the whole
  run, outputs stacked in memory);
* **NWP**: ours (the forecasts of a day batched with vmap) vs the same
  forecasts run one after the other.

Targets (issue 3): a year of truth < 60 min; the NWP pool of that year < 60 min more.

    python bench/world_throughput.py [--days 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_facts, markdown_table, package_versions, summary, write_result  # noqa: E402

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from fuxiops.pipeline.world.build import WorldSpec, build_world, parse_start
days, out, workers = int(sys.argv[1]), Path(sys.argv[2]), (None if sys.argv[3] == "default" else int(sys.argv[3]))
spec = WorldSpec(start=parse_start("2023-01-01T00"), days=days, grid="2.8125deg", seed=3, decorrelation_days=0)
marks = []
t0 = time.perf_counter()
build_world(out, spec=spec, obs_workers=workers,
            progress=lambda d, n, m: marks.append((time.perf_counter() - t0, d, m, time.process_time())))
print(json.dumps({"marks": marks, "wall_s": time.perf_counter() - t0,
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _build(days: int, out: Path, workers: str) -> dict:
    run = subprocess.run([sys.executable, "-c", CHILD, str(days), str(out), workers], check=True,
                         capture_output=True, text=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def _digest(root: Path) -> str:
    import hashlib
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and "_build" not in p.parts:
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def whole_build(days: int, serial_wall_s: float, serial_digest: str) -> dict:
    """The default build (parallel observation writers) against the in-process one just timed."""
    import os

    from fuxiops.pipeline.world.build import default_obs_workers
    with tempfile.TemporaryDirectory() as tmp:
        res = _build(days, Path(tmp) / "w", "default")
        same = _digest(Path(tmp) / "w") == serial_digest
    # the first day includes JIT compilation in both runs
    return {"ours_s": res["wall_s"], "peer_s": serial_wall_s, "days": days, "obs_workers": default_obs_workers(),
            "cores": os.cpu_count(), "byte_identical": same, "maxrss_mb_main": res["maxrss_kb"] / 1024}


def build_phases(days: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        res = _build(days, Path(tmp) / "w", "0")
        size = sum(p.stat().st_size for p in (Path(tmp) / "w").rglob("*") if p.is_file())
        digest = _digest(Path(tmp) / "w")
    phases: dict[str, list[float]] = {"truth+reanalysis": [], "nwp": [], "obs": []}
    cpu: dict[str, list[float]] = {k: [] for k in phases}
    prev = prev_cpu = None
    for t, _, msg, c in res["marks"]:
        if prev is not None:
            for key, suffix in (("truth+reanalysis", "truth + reanalysis"), ("nwp", "NWP"), ("obs", "observations")):
                if msg.endswith(suffix):
                    phases[key].append(t - prev)
                    cpu[key].append(c - prev_cpu)
        prev, prev_cpu = t, c
    # the first day includes JIT compilation: report days 2.. when there are any
    skip = 1 if days > 1 else 0
    return {"per_day_s": {k: summary(v[skip:]) for k, v in phases.items()},
            "per_day_cpu_s": {k: summary(v[skip:]) for k, v in cpu.items()},
            "first_day_s": {k: v[0] for k, v in phases.items()},
            "maxrss_mb": res["maxrss_kb"] / 1024, "bytes_per_day": size / days,
            "wall_s": res["wall_s"], "digest": digest}


def truth_core(days: int, reps: int) -> dict:
    import jax
    from dinosaur import time_integration
    from fuxiops.pipeline.world.model import TRUTH_CORE, HeldSuarezCore
    from fuxiops.pipeline.world.seeds import initial_state
    core = HeldSuarezCore(TRUTH_CORE)
    s = initial_state(3, core, decorrelation_days=0)
    core.advance(s, 1)  # compile
    ours = []
    for _ in range(reps):
        t = time.perf_counter()
        core.advance(s, 4 * days)
        ours.append(time.perf_counter() - t)
    # peer: dinosaur's trajectory_from_step, one jitted scan over all windows
    step = core._window  # the same 6-hour step, so the comparison is about the driver only
    traj = jax.jit(time_integration.trajectory_from_step(lambda x: step(x), 4 * days, 1))
    x0 = core._to_jax(s)
    jax.block_until_ready(traj(x0))
    peer = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(traj(x0))
        peer.append(time.perf_counter() - t)
    return {"ours_s": summary(ours), "peer_s": summary(peer), "days": days}


def nwp_batch(lead_h: int, reps: int) -> dict:
    from fuxiops.catalog import TESTBED
    from fuxiops.grids import get_grid
    from fuxiops.pipeline.world.model import NWP_CORE, TRUTH_CORE, HeldSuarezCore
    from fuxiops.pipeline.world.nwp import NwpModel
    from fuxiops.pipeline.world.seeds import initial_state
    truth = HeldSuarezCore(TRUTH_CORE)
    a = initial_state(3, truth, decorrelation_days=0)
    b = initial_state(4, truth, decorrelation_days=0)
    m = NwpModel(NWP_CORE, TRUTH_CORE, get_grid("2.8125deg"), TESTBED)
    run = lambda inits: sum(1 for _ in m.forecast(inits, lead_h))
    run([a, b]), run([a])  # compile both batch sizes
    ours, peer = [], []
    for _ in range(reps):
        t = time.perf_counter()
        run([a, b])
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        run([a])
        run([b])
        peer.append(time.perf_counter() - t)
    return {"ours_s": summary(ours), "peer_s": summary(peer), "forecasts": 2, "lead_h": lead_h}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=int, default=2, help="days of the real build (>= 2: day 1 includes compiling)")
    ap.add_argument("--core-days", type=int, default=2)
    ap.add_argument("--reps", type=int, default=1, help="repetitions of the side-by-side comparisons")
    a = ap.parse_args()
    load = open("/proc/loadavg").read().split()[:3]
    bp = build_phases(a.days)
    wb = whole_build(a.days, bp["wall_s"], bp.pop("digest"))
    tc = truth_core(a.core_days, a.reps)
    nb = nwp_batch(240, a.reps)
    pd = bp["per_day_s"]
    truth_day = pd["truth+reanalysis"]["median"]
    nwp_day = pd["nwp"]["median"]
    obs_day = pd["obs"]["median"]
    result = {
        "machine": machine_facts(), "load_average_at_start": load,
        "packages": package_versions(["fuxiops", "dinosaur", "jax", "jaxlib", "numpy", "xarray", "zarr", "eccodes"]),
        "grid": "2.8125deg", "truth_core": "T42 L20 dt 20 min", "nwp_core": "T21 L10 dt 60 min",
        "build": bp, "whole_build": wb, "truth_core_driver": tc, "nwp_batching": nb,
        "year_extrapolation_min": {"truth+reanalysis": truth_day * 365 / 60, "nwp_pool": nwp_day * 365 / 60,
                                   "obs": obs_day * 365 / 60},
        "days_per_minute": {"truth+reanalysis": 60 / truth_day, "nwp_pool": 60 / nwp_day, "obs": 60 / obs_day},
    }
    write_result("world_throughput", result)
    cd = bp["per_day_cpu_s"]
    result["year_extrapolation_cpu_min_2_cores"] = {k: cd[k]["median"] * 365 / 60 / 2 for k in cd}
    write_result("world_throughput", result)
    rows = [
        [name, f"{w:.1f} s", f"{cd[k]['median']:.1f} s", f"{60 / w:.1f}", f"{w * 365 / 60:.0f}",
         f"{cd[k]['median'] * 365 / 60 / 2:.0f}", target]
        for name, k, w, target in (("truth + reanalysis (to Zarr)", "truth+reanalysis", truth_day, "< 60"),
                                   ("NWP pool: 2 x 240 h forecasts (to Zarr)", "nwp", nwp_day, "< 60"),
                                   ("observations, 5 types raw + sim (BUFR)", "obs", obs_day, "-"))]
    headers = ["phase (per simulated day)", "wall", "CPU", "days / min (wall)", "year, wall (min)",
               "year, CPU / 2 cores (min)", "target (min)"]
    print(markdown_table(headers, rows))
    print()
    comparisons = markdown_table(["comparison", "ours (s)", "peer (s)"], [
        [f"whole build, {wb['days']} days: {wb['obs_workers']} observation writer process(es) vs one process "
         f"(byte-identical: {wb['byte_identical']})", f"{wb['ours_s']:.1f}", f"{wb['peer_s']:.1f}"],
        [f"truth core {tc['days']} days: per-window loop vs dinosaur trajectory_from_step scan",
         f"{tc['ours_s']['median']:.2f}", f"{tc['peer_s']['median']:.2f}"],
        ["NWP 2 forecasts x 240 h: vmap batch vs sequential", f"{nb['ours_s']['median']:.2f}",
         f"{nb['peer_s']['median']:.2f}"]])
    print(comparisons)
    print(f"\nbuild memory peak {bp['maxrss_mb']:.0f} MB; disk {bp['bytes_per_day'] / 1e6:.0f} MB per simulated day; "
          f"load average at start {load}")
    md = Path(__file__).resolve().parent / "results" / "world_throughput.md"
    md.write_text("\n".join(["# world_throughput", "", f"load average at start {load} on {result['machine']['cores']} cores",
                             "", markdown_table(headers, rows), "", comparisons, ""]))


if __name__ == "__main__":
    main()
