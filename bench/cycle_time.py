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

Other grids (``--grid 0.25deg``): the world must already exist (``--world``,
built with ``fuxiops world build --grid 0.25deg --no-nwp``); untrained
bootstrap checkpoints of the ``small`` preset are built by the cycle's own
bootstrap code (normalisation streamed from the world's reanalysis) and the
deployment's ``models.*`` point at them; the cold start may run a shorter
forecast (``--cold-steps``: it only has to commit the next background); the
timed cycle runs in a fresh child process that samples the RSS of its process
tree (peak per step) and the load average. Results go to
``bench/results/cycle_time_0p25.json`` (+ ``.md``), leaving the testbed ones.

    fuxiops world build --grid 0.25deg --days 2 --no-nwp --out /tmp/c025/world --seed 3
    python bench/cycle_time.py --grid 0.25deg --world /tmp/c025/world --home /tmp/c025/home --repeat 1 \\
        --cold-steps 1 --no-plain
    python bench/cycle_time.py --grid 0.25deg --world /tmp/c025/world --home /tmp/c025/home --repeat 1 \\
        --cold-steps 1 --plain-only     # adds the plain peer to those results
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine_facts, markdown_table, package_versions, summary, write_result  # noqa: E402

STEPS = ("load_models", "background", "ingest", "qc", "assimilate", "forecast", "publish", "verify", "commit_state")


def plain_cycle(cfg: Any, cycle_time: datetime, products_dir: Path,
                intervals: list[tuple[str, float, float]] | None = None) -> dict[str, float]:
    """The cycle's steps in sequence without Prefect or Dask; returns seconds per step.

    ``intervals`` (optional) receives ``(step, start, end)`` perf-counter times, for per-step memory.
    """
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
        t1 = time.perf_counter()
        t[name] = t1 - t0
        if intervals is not None:
            intervals.append((name, t0, t1))
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


# ---------------------------------------------------------------------------------------------
# Memory and load of a timed run (child process)
# ---------------------------------------------------------------------------------------------

def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants (Dask worker processes, a temporary Prefect server)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


class RssSampler:
    """Samples the RSS of this process and of its process tree every ``period`` seconds in a thread."""

    def __init__(self, period: float = 1.0) -> None:
        self.period = period
        self.samples: list[tuple[float, int, int]] = []  # (perf_counter, self RSS, tree RSS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            own = _rss_bytes(me)
            tree = sum(_rss_bytes(p) for p in _tree_pids(me))
            self.samples.append((time.perf_counter(), own, tree))
            self._stop.wait(self.period)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, t0: float = float("-inf"), t1: float = float("inf")) -> dict[str, float]:
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        return {"self_gib": round(max((s[1] for s in inside), default=0) / 2**30, 3),
                "tree_gib": round(max((s[2] for s in inside), default=0) / 2**30, 3)}


@contextmanager
def traced_flow_steps(intervals: list[tuple[str, float, float]]) -> Iterator[None]:
    """Record the start and end of each step of the flow (its own step timer) and print progress."""
    from fuxiops.pipeline.cycle import flows

    original = flows._Timer.__call__

    @contextmanager
    def traced(self: Any, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        print(f"  {name} ...", flush=True)
        try:
            with original(self, name):
                yield
        finally:
            t1 = time.perf_counter()
            intervals.append((name, t0, t1))
            print(f"  {name} {t1 - t0:.1f} s", flush=True)

    flows._Timer.__call__ = traced  # type: ignore[method-assign]
    try:
        yield
    finally:
        flows._Timer.__call__ = original  # type: ignore[method-assign]


def _product_sizes(path: str | None) -> dict[str, int]:
    """Bytes per product format of a published run, from its manifest."""
    if not path or not (Path(path) / "manifest.json").is_file():
        return {}
    out: dict[str, int] = {}
    for f in json.loads((Path(path) / "manifest.json").read_text()).get("files", []):
        out[f["format"]] = out.get(f["format"], 0) + int(f.get("size") or 0)
    return out


def run_child(spec_path: str) -> None:
    """Child process: one timed mode (``flow`` repetitions, ``plain`` repetitions or the ``cold`` start),
    with RSS sampling and load averages; writes its JSON result next to the spec."""
    spec = json.loads(Path(spec_path).read_text())
    os.environ.update(spec["env"])
    from fuxiops.config import load_config
    from fuxiops.logs import setup_logging

    setup_logging("WARNING")
    t_cycle = datetime.fromisoformat(spec["time"])
    if spec["mode"] == "bootstrap":
        from fuxiops.pipeline.cycle import components as comp

        t0 = time.perf_counter()
        nets = comp.load_networks(load_config(spec["config_path"]))
        info = {"seconds": round(time.perf_counter() - t0, 1), "untrained": nets.untrained,
                **{k: nets.info[k].get("checkpoint") for k in ("forecaster", "assimilator")}}
        Path(spec["out"]).write_text(json.dumps({"mode": "bootstrap", "checkpoints": info}))
        return
    runs: list[dict[str, Any]] = []
    load_start = os.getloadavg()
    with RssSampler(spec.get("rss_period", 1.0)) as sampler:
        for k in range(spec["repeat"]):
            intervals: list[tuple[str, float, float]] = []
            la0 = os.getloadavg()
            t0 = time.perf_counter()
            if spec["mode"] == "plain":
                cfg = load_config(spec["config_path"])
                timings = plain_cycle(cfg, t_cycle, Path(spec["plain_products"]), intervals)
                status, products = "plain", None
            else:
                from fuxiops.pipeline.cycle.flows import cycle

                with traced_flow_steps(intervals):
                    out = cycle(time=t_cycle.isoformat(), force=spec["force"], config_path=spec["config_path"])
                timings, status, products = out["timings"], out["status"], out.get("products_path")
            t1 = time.perf_counter()
            runs.append({"wall_seconds": t1 - t0, "timings": timings, "status": status,
                         "load_average_start": la0, "load_average_end": os.getloadavg(),
                         "peak_rss": sampler.peak(t0, t1),
                         "peak_rss_by_step": {n: sampler.peak(a, b) for n, a, b in intervals},
                         "product_bytes": _product_sizes(products)})
            print(f"{spec['mode']} run {k + 1}: {t1 - t0:.1f} s  {status}  peak RSS "
                  f"{runs[-1]['peak_rss']['tree_gib']:.2f} GiB (process tree)", flush=True)
    import resource

    result = {"mode": spec["mode"], "runs": runs, "load_average_start": load_start,
              "load_average_end": os.getloadavg(),
              "max_rss_gib_getrusage": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}
    Path(spec["out"]).write_text(json.dumps(result, indent=1, default=str))


def _in_child(mode: str, cfg_path: Path, t: datetime, repeat: int, force: bool, work: Path,
              **extra: Any) -> dict[str, Any]:
    """Run one mode in a fresh Python process (its memory is its own) and return its JSON result."""
    spec = {"mode": mode, "config_path": str(cfg_path), "time": t.isoformat(), "repeat": repeat, "force": force,
            "out": str(work / f"child-{mode}.json"),
            "env": {k: os.environ[k] for k in ("FUXIOPS_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED",
                                               "FUXIOPS_RETRY_BASE_S") if k in os.environ}, **extra}
    spec_path = work / f"child-{mode}.spec.json"
    spec_path.write_text(json.dumps(spec))
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(spec_path)], check=True)
    return json.loads(Path(spec["out"]).read_text())


def _result_name(grid: str, testbed: bool) -> str:
    return "cycle_time" if testbed else "cycle_time_" + grid.removesuffix("deg").replace(".", "p")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", default=os.environ.get("FUXIOPS_HOME") or str(Path.home() / ".fuxiops-bench"),
                    help="Deployment home (its world is built if missing).")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40, help="Forecast steps (40 = 10 days).")
    ap.add_argument("--grid", default=None,
                    help="Another grid than the testbed (e.g. 0.25deg): needs --world; results go to "
                         "cycle_time_<grid>.json; the timed runs go in child processes.")
    ap.add_argument("--world", default=None, help="An existing world folder of the grid (fuxiops world build).")
    ap.add_argument("--cold-steps", type=int, default=None,
                    help="Forecast steps of the untimed cold start (default: --steps; 1 is enough to commit "
                         "the timed cycle's background).")
    ap.add_argument("--no-plain", action="store_true", help="Skip the plain sequential peer.")
    ap.add_argument("--plain-only", action="store_true",
                    help="With --grid: run only the plain peer and add it to the existing results of the flow.")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child(args.child)
        return
    os.environ["FUXIOPS_HOME"] = args.home
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("FUXIOPS_RETRY_BASE_S", "0")

    import yaml

    from fuxiops.config import load_config
    from fuxiops.logs import setup_logging
    from fuxiops.pipeline.cycle import testbed
    from fuxiops.pipeline.cycle.flows import cycle
    from fuxiops.pipeline.cycle.runs import RunCatalog

    setup_logging("WARNING")
    base = load_config()
    overrides: dict[str, Any] = {"schedule": {**base.schedule.model_dump(), "forecast_steps": args.steps}}
    isolate = args.grid is not None
    world_info: dict[str, Any] = {}
    if args.world or args.grid:
        from fuxiops.pipeline.world.build import open_world

        if not args.world:
            raise SystemExit("--grid needs --world: an existing world of that grid (fuxiops world build --grid "
                             f"{args.grid} --no-nwp --out DIR)")
        w = open_world(Path(args.world).resolve())
        grid = args.grid or w.spec.grid
        if w.spec.grid != grid or not w.complete:
            raise SystemExit(f"{args.world}: a {'complete' if w.complete else 'partial'} world of grid "
                             f"{w.spec.grid}, need a complete one of {grid}")
        overrides["grid"] = grid
        overrides["data"] = {**base.data.model_dump(), "world": str(Path(args.world).resolve())}
        overrides["world"] = {"seed": w.spec.seed, "start": w.spec.start.strftime("%Y-%m-%dT%H"),
                              "days": float(w.spec.days)}
        world_info = {"path": str(Path(args.world).resolve()), "days": w.spec.days, "seed": w.spec.seed,
                      "nwp": w.spec.with_nwp, "start": w.spec.start.isoformat()}
    cfg = load_config(**overrides)
    print(f"home {cfg.home}, grid {cfg.grid}, {args.steps} steps; building/checking the world ...", flush=True)
    t0 = time.perf_counter()
    testbed.ensure_world(cfg)
    print(f"world ready ({time.perf_counter() - t0:.0f} s)", flush=True)
    start = datetime.fromisoformat(cfg.world.start.replace("Z", "")) + timedelta(hours=6)
    cold, timed_cycle = start, start + timedelta(hours=6)
    n_files = {str(t): testbed.deliver_observations(cfg, t) for t in (cold, timed_cycle)}

    checkpoints: dict[str, Any] = {}
    if isolate and cfg.models.forecaster == "default":
        # No shipped checkpoint for this grid: the cycle's own bootstrap builds the untrained networks (real
        # architecture, normalisation from the world's reanalysis, seeded) and the deployment points at them.
        # Built in a child process: this one stays small while the timed cycle runs.
        print("building / loading the untrained bootstrap checkpoints ...", flush=True)
        home = Path(cfg.home)
        home.mkdir(parents=True, exist_ok=True)
        boot_path = home / "bench-cycle-bootstrap.yaml"
        boot_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        checkpoints = _in_child("bootstrap", boot_path, cold, 1, False, home)["checkpoints"]
        overrides["models"] = {**cfg.models.model_dump(), "forecaster": checkpoints["forecaster"],
                               "assimilator": checkpoints["assimilator"]}
        cfg = load_config(**overrides)
        print(f"checkpoints ready ({checkpoints['seconds']:.0f} s): {checkpoints['forecaster']}", flush=True)

    # The flow reads its configuration from a file: write this one (forecast steps) next to the home.
    home = Path(cfg.home)
    home.mkdir(parents=True, exist_ok=True)
    cfg_path = home / "bench-cycle.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    cold_path = cfg_path
    cold_steps = args.cold_steps or args.steps
    if cold_steps != args.steps:
        cold_path = home / "bench-cycle-cold.yaml"
        cold_cfg = load_config(**{**overrides, "schedule": {**overrides["schedule"], "forecast_steps": cold_steps}})
        cold_path.write_text(yaml.safe_dump(cold_cfg.model_dump(mode="json"), sort_keys=False))

    ours: list[dict[str, float]] = []
    walls: list[float] = []
    plain: list[dict[str, float]] = []
    pwalls: list[float] = []
    child: dict[str, Any] = {}
    pdir = Path(cfg.home) / "bench-plain-products"
    if isolate:
        if args.plain_only:
            # The flow was measured by an earlier invocation: keep its figures, add the peer's.
            prev = json.loads((RESULTS / f"{_result_name(cfg.grid, False)}.json").read_text())
            child["flow"], cold_info = prev["runs"]["flow"], prev["cold_start"]
        else:
            print(f"cold start {cold:%Y%m%d%H} ({cold_steps} steps, not timed) ...", flush=True)
            t0 = time.perf_counter()
            child["cold"] = _in_child("cold", cold_path, cold, 1, True, home)
            print(f"cold start done ({time.perf_counter() - t0:.0f} s)", flush=True)
            cold_info = {"cycle": cold.isoformat(), "forecast_steps": cold_steps,
                         "wall_seconds": child["cold"]["runs"][0]["wall_seconds"],
                         "timings": child["cold"]["runs"][0]["timings"]}
            child["flow"] = _in_child("flow", cfg_path, timed_cycle, args.repeat, True, home)
        ours = [r["timings"] for r in child["flow"]["runs"]]
        walls = [r["wall_seconds"] for r in child["flow"]["runs"]]
        if not args.no_plain:
            child["plain"] = _in_child("plain", cfg_path, timed_cycle, args.repeat, False, home,
                                       plain_products=str(pdir))
            plain = [r["timings"] for r in child["plain"]["runs"]]
            pwalls = [r["wall_seconds"] for r in child["plain"]["runs"]]
    else:
        cycle(time=cold.isoformat(), config_path=str(cfg_path))  # cold start: not timed (builds untrained nets)
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

    if not isolate and not args.no_plain:
        for k in range(args.repeat):
            t0 = time.perf_counter()
            plain.append(plain_cycle(cfg, timed_cycle, pdir))
            pwalls.append(time.perf_counter() - t0)
            print(f"plain run {k + 1}: {pwalls[-1]:.1f} s", flush=True)

    def per_step(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
        return {s: summary([r.get(s, 0.0) for r in runs]) for s in STEPS if any(s in r for r in runs)}

    name = _result_name(cfg.grid, not isolate)
    result: dict[str, Any] = {
        "benchmark": name, "machine": machine_facts(),
        "packages": package_versions(["fuxiops", "prefect", "prefect-dask", "dask", "distributed", "torch",
                                      "eccodes", "zarr", "netCDF4", "sqlalchemy"]),
        "grid": cfg.grid, "grid_shape": list(cfg.grid_spec.shape), "variables": cfg.variable_set.to_dict(),
        "forecast_steps": args.steps,
        "model": {"preset": preset, "untrained": untrained}, "observations": obs_counts,
        "observation_files": n_files, "formats": list(cfg.outputs.formats), "cycle": timed_cycle.isoformat(),
        "ours_prefect_dask": {"wall_seconds": summary(walls), "steps": per_step(ours)},
    }
    if plain:
        result["peer_plain_sequential"] = {"wall_seconds": summary(pwalls), "steps": per_step(plain)}
    if isolate:
        result["world"] = world_info
        result["checkpoints"] = checkpoints
        result["cold_start"] = cold_info
        result["runs"] = {m: child[m] for m in ("flow", "plain") if m in child}
        result["notes"] = (
            f"UNTRAINED weights (timing only): the {preset} forecaster and assimilator were built by the cycle's "
            "bootstrap (real architecture, seeded, normalisation streamed from the world's reanalysis, output "
            "head zeroed) and the deployment's models.* point at them; their forecasts are persistence plus "
            "the mean tendency. One cycle on its own background (forced re-run of the cycle after a "
            f"{cold_steps}-step cold start), run in a fresh child process; peak RSS sampled every second over "
            "the process tree (Prefect's temporary server included). Shared 2-core machine: other jobs were "
            "running, see the load averages.")
    else:
        result["target_seconds"] = 60
        result["notes"] = ("Wall time of the forced re-run of one cycle on its own background (flow: includes "
                           "Prefect task/flow bookkeeping against an ephemeral local server, the Dask LocalCluster "
                           "of the cycle, catalog and state-store writes). Peer: the same step functions in "
                           "sequence, no Prefect, no Dask. Shared 2-core machine: other jobs were running; "
                           "compare ratios.")
    path = write_result(name, result)
    md = _markdown(result, cfg, args, walls, pwalls, ours, plain, preset, untrained)
    (path.with_suffix(".md")).write_text(md + "\n")
    print(md)
    print(f"wrote {path}")


def _markdown(result: dict[str, Any], cfg: Any, args: Any, walls: list[float], pwalls: list[float],
              ours: list[dict[str, float]], plain: list[dict[str, float]], preset: str | None,
              untrained: bool) -> str:
    flow_runs = result.get("runs", {}).get("flow", {}).get("runs", [])
    plain_runs = result.get("runs", {}).get("plain", {}).get("runs", [])
    rows = []
    for s in STEPS:
        o = result["ours_prefect_dask"]["steps"].get(s)
        p = result.get("peer_plain_sequential", {}).get("steps", {}).get(s)
        row = [s, f"{o['median']:.2f}" if o else ""]
        if plain:
            row.append(f"{p['median']:.2f}" if p else "")
        for runs in (flow_runs, plain_runs):
            if runs:
                pk = runs[0]["peak_rss_by_step"].get(s)
                row.append(f"{pk['tree_gib']:.2f}" if pk else "")
        rows.append(row)
    last = ["**wall (whole cycle)**", f"{summary(walls)['median']:.1f} ({min(walls):.1f}-{max(walls):.1f})"]
    if plain:
        last.append(f"{summary(pwalls)['median']:.1f} ({min(pwalls):.1f}-{max(pwalls):.1f})")
    for runs in (flow_runs, plain_runs):
        if runs:
            last.append(f"{max(r['peak_rss']['tree_gib'] for r in runs):.2f}")
    rows.append(last)
    headers = ["step", "Prefect flow + Dask (ours)"] + (["plain sequential (peer)"] if plain else []) + \
        (["peak RSS GiB (flow, process tree)"] if flow_runs else []) + \
        (["peak RSS GiB (plain)"] if plain_runs else [])
    md = (f"Cycle time, {cfg.grid} ({' x '.join(map(str, cfg.grid_spec.shape))}), {args.steps} x 6 h, {preset} "
          f"model{' (UNTRAINED weights: timing only)' if untrained else ''}, median of {args.repeat} (seconds)\n\n"
          + markdown_table(headers, rows))
    if flow_runs:
        r0 = flow_runs[0]
        la = ", ".join(f"{m} ({', '.join(f'{x:.2f}' for x in r['load_average_start'])}) -> "
                       f"({', '.join(f'{x:.2f}' for x in r['load_average_end'])})"
                       for m, runs in (("flow", flow_runs), ("plain", plain_runs)) for r in runs)
        sizes = ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in r0.get("product_bytes", {}).items())
        md += (f"\n\n- load average (1, 5, 15 min) at start -> end of the timed run(s): {la} on "
               f"{result['machine']['cores']} cores (shared machine)"
               f"\n- products of the timed run: {sizes}"
               f"\n- cold start (not timed): {result['cold_start']['forecast_steps']} steps, "
               f"{result['cold_start']['wall_seconds']:.0f} s; world {result['world'].get('days')} days, seed "
               f"{result['world'].get('seed')}"
               f"\n- {result['notes']}")
    return md


if __name__ == "__main__":
    main()
