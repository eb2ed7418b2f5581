"""Wall time of one testbed cycle, by step: the Prefect + Dask flow side by side with a plain sequential run.

Ours: ``fuxiops.pipeline.cycle.flows.cycle`` (Prefect flow, decoding and product
encoding on a DaskTaskRunner, catalog, state store, per-lead checkpoints).
Peer: the same steps called one after the other in plain Python (no Prefect,
no Dask, products through ``fuxiops.pipeline.products.publish``), on the same
inputs: the difference is the orchestration cost.

Setup: the testbed world of the deployment (built if missing, as ``fuxiops
demo`` does), observations delivered for two cycles, a cold start at the
first (not timed); then the second cycle (own background) is re-run
``--repeat`` times with ``force``. Target: under 60 s per cycle on 2 cores.

    python bench/cycle_time.py [--home DIR] [--repeat 3] [--steps 40]

Writes bench/results/cycle_time.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_facts, markdown_table, package_versions, summary, write_result  # noqa: E402

STEPS = ("load_models", "background", "ingest", "qc", "assimilate", "forecast", "publish", "verify", "commit_state")


def plain_cycle(cfg: Any, cycle_time: datetime, products_dir: Path) -> dict[str, float]:
    """The cycle's steps in sequence without Prefect or Dask; returns seconds per step."""
    import shutil

    from fuxiops.pipeline.cycle import components as comp
    from fuxiops.pipeline.cycle import steps
    from fuxiops.pipeline.cycle.store import StateStore
    from fuxiops.pipeline.cycle.workdir import RunWorkDir
    from fuxiops.pipeline.products import publish

    t: dict[str, float] = {}
    rid = cycle_time.strftime("%Y%m%d%H")

    def timed(name: str, fn: Any) -> Any:
        t0 = time.perf_counter()
        out = fn()
        t[name] = time.perf_counter() - t0
        return out

    store = StateStore(cfg.location("state"))
    wd = RunWorkDir(str(products_dir.parent / "plain-runs"), rid)
    nets = timed("load_models", lambda: comp.load_networks(cfg))
    bg = timed("background", lambda: steps.resolve_background(cfg, store, cycle_time, comp.cold_start_states))
    batches = comp.observation_batches(cfg, cycle_time)
    decoded = timed("ingest", lambda: comp.merge_decoded(
        [comp.decode_source(s, f, cycle_time, cfg) for s, f in batches], batches, cfg, cycle_time))
    obs = timed("qc", lambda: comp.quality_control(decoded, bg.state, cfg, cycle_time, nets))
    analysis, _ = timed("assimilate", lambda: steps.analyse(nets.assimilator, bg.state, obs.gridded, obs.n_used,
                                                            cfg, cycle_time))
    n = cfg.schedule.forecast_steps
    timed("forecast", lambda: steps.run_forecast(nets.forecaster, bg.previous, analysis, cycle_time, n, wd))
    meta = comp.run_meta(cfg, cycle_time, nets, n, "published", [], bg)
    timed("publish", lambda: publish(comp.lead_states(meta, str(wd.leads_dir), cfg), meta, products_dir,
                                     cfg.outputs.formats, cfg, replace=True))
    timed("verify", lambda: comp.verify(cfg, cycle_time, bg.state, analysis, obs, wd.leads_dir, n))
    shutil.rmtree(wd.path, ignore_errors=True)
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", default=os.environ.get("FUXIOPS_HOME") or str(Path.home() / ".fuxiops-bench"),
                    help="Deployment home (its world is built if missing).")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40, help="Forecast steps (40 = 10 days).")
    args = ap.parse_args()
    os.environ["FUXIOPS_HOME"] = args.home
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("FUXIOPS_RETRY_BASE_S", "0")

    from fuxiops.config import load_config
    from fuxiops.logs import setup_logging
    from fuxiops.pipeline.cycle import testbed
    from fuxiops.pipeline.cycle.flows import cycle
    from fuxiops.pipeline.cycle.runs import RunCatalog

    setup_logging("WARNING")
    base = load_config()
    cfg = load_config(schedule={**base.schedule.model_dump(), "forecast_steps": args.steps})
    print(f"home {cfg.home}, grid {cfg.grid}, {args.steps} steps; building/checking the world ...", flush=True)
    t0 = time.perf_counter()
    testbed.ensure_world(cfg)
    print(f"world ready ({time.perf_counter() - t0:.0f} s)", flush=True)
    start = datetime.fromisoformat(cfg.world.start.replace("Z", "")) + timedelta(hours=6)
    cold, timed_cycle = start, start + timedelta(hours=6)
    n_files = {str(t): testbed.deliver_observations(cfg, t) for t in (cold, timed_cycle)}

    # The flow reads its configuration from a file: write this one (forecast steps) next to the home.
    import yaml

    cfg_path = Path(cfg.home) / "bench-cycle.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    cycle(time=cold.isoformat(), config_path=str(cfg_path))  # cold start: not timed (builds untrained nets)

    ours: list[dict[str, float]] = []
    walls: list[float] = []
    for k in range(args.repeat):
        t0 = time.perf_counter()
        out = cycle(time=timed_cycle.isoformat(), force=True, config_path=str(cfg_path))
        walls.append(time.perf_counter() - t0)
        ours.append(out["timings"])
        print(f"flow run {k + 1}: {walls[-1]:.1f} s  {out['status']}", flush=True)
    with RunCatalog(cfg.catalog_url) as cat:
        rec = cat.get(timed_cycle.strftime("%Y%m%d%H"))
        obs_counts = rec.obs_counts if rec else {}
        untrained = bool(rec and rec.model.get("forecaster", {}).get("untrained"))
        preset = rec.model.get("forecaster", {}).get("preset") if rec else None

    plain: list[dict[str, float]] = []
    pwalls: list[float] = []
    pdir = Path(cfg.home) / "bench-plain-products"
    for k in range(args.repeat):
        t0 = time.perf_counter()
        plain.append(plain_cycle(cfg, timed_cycle, pdir))
        pwalls.append(time.perf_counter() - t0)
        print(f"plain run {k + 1}: {pwalls[-1]:.1f} s", flush=True)

    def per_step(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
        return {s: summary([r.get(s, 0.0) for r in runs]) for s in STEPS if any(s in r for r in runs)}

    result = {
        "benchmark": "cycle_time", "machine": machine_facts(),
        "packages": package_versions(["fuxiops", "prefect", "prefect-dask", "dask", "distributed", "torch",
                                      "eccodes", "zarr", "netCDF4", "sqlalchemy"]),
        "grid": cfg.grid, "variables": cfg.variable_set.to_dict(), "forecast_steps": args.steps,
        "model": {"preset": preset, "untrained": untrained}, "observations": obs_counts,
        "observation_files": n_files, "formats": list(cfg.outputs.formats), "cycle": timed_cycle.isoformat(),
        "ours_prefect_dask": {"wall_seconds": summary(walls), "steps": per_step(ours)},
        "peer_plain_sequential": {"wall_seconds": summary(pwalls), "steps": per_step(plain)},
        "target_seconds": 60,
        "notes": "Wall time of the forced re-run of one cycle on its own background (flow: includes Prefect "
                 "task/flow bookkeeping against an ephemeral local server, the Dask LocalCluster of the cycle, "
                 "catalog and state-store writes). Peer: the same step functions in sequence, no Prefect, no "
                 "Dask. Shared 2-core machine: other jobs were running; compare ratios.",
    }
    path = write_result("cycle_time", result)
    rows = []
    for s in STEPS:
        o = result["ours_prefect_dask"]["steps"].get(s)
        p = result["peer_plain_sequential"]["steps"].get(s)
        rows.append([s, f"{o['median']:.2f}" if o else "", f"{p['median']:.2f}" if p else ""])
    rows.append(["**wall (whole cycle)**", f"{summary(walls)['median']:.1f} ({min(walls):.1f}-{max(walls):.1f})",
                 f"{summary(pwalls)['median']:.1f} ({min(pwalls):.1f}-{max(pwalls):.1f})"])
    md = (f"Cycle time, {cfg.grid}, {args.steps} x 6 h, {preset} model{' (untrained)' if untrained else ''}, "
          f"median of {args.repeat} (seconds)\n\n"
          + markdown_table(["step", "Prefect flow + Dask (ours)", "plain sequential (peer)"], rows))
    (path.with_suffix(".md")).write_text(md + "\n")
    print(md)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
