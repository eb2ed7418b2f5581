"""Forecaster step time and peak memory at 0.25 degree (721 x 1440) vs the machine's fp32 compute ceiling.

For each preset: the FLOPs of one step (traced on the meta device), the
measured PyTorch eager forward time (fp32, CPU, production variables: 69
state channels + TP6) and peak resident memory of a fresh process, side by
side with the theoretical time at the fp32 matmul rate measured in the same
script (a large ``torch.matmul``). Reports the fraction of the compute
ceiling reached and extrapolates a 40-step rollout.

    python bench/model_step.py                       # small, then base if it fits
    python bench/model_step.py --presets small --repeats 3
    python bench/model_step.py --presets small,base --rollout small   # plus a real 40-step rollout to Zarr
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_facts, markdown_table, package_versions, summary, write_result  # noqa: E402


def matmul_gflops(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """fp32 GFLOP/s of an n x n matmul (2 n^3 FLOPs), median of ``repeats``."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.matmul(a, b)
        rates.append(2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return summary(rates)


def parse_spec(spec: str) -> tuple[str, "object"]:
    """``small`` or ``small:patch=2x4x4:window=9x9`` -> (preset name, ForecasterArch)."""
    from dataclasses import replace

    from fuxiops.models.presets import get_preset

    name, *opts = spec.split(":")
    arch = get_preset(name).forecaster
    for o in opts:
        k, _, v = o.partition("=")
        arch = replace(arch, **{k: tuple(int(x) for x in v.split("x"))})
    return name, arch


def _child(preset: str, grid: str, repeats: int, threads: int) -> None:
    """Run in a fresh process: build, warm up, time ``repeats`` steps; print JSON."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from fuxiops.catalog import PRODUCTION
    from fuxiops.grids import get_grid
    from fuxiops.models.torch_forecaster import TorchForecaster

    g = get_grid(grid)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    fc = TorchForecaster.build(parse_spec(preset)[1], PRODUCTION, g, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, len(PRODUCTION.state_channels), *g.shape), dtype=np.float32)
    t0 = np.datetime64("2023-01-01T06")
    rss_built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    for i in range(repeats + 1):  # the first step warms up allocators and kernels
        t = time.perf_counter()
        y = fc.step(x, t0)
        dt_ = time.perf_counter() - t
        if i:
            times.append(dt_)
        del y
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"times": times, "peak_rss_bytes": peak, "rss_before_bytes": rss0,
                      "rss_after_build_bytes": rss_built}))


def _child_rollout(preset: str, grid: str, steps: int, out: str, threads: int) -> None:
    """A real streamed rollout as ``fuxiops forecast`` runs it (generator -> Zarr), timed; prints JSON."""
    import numpy as np
    import torch
    import xarray as xr

    torch.set_num_threads(threads)
    from fuxiops.catalog import PRODUCTION
    from fuxiops.grids import get_grid
    from fuxiops.models.inference import write_forecast
    from fuxiops.models.torch_forecaster import TorchForecaster
    from fuxiops.state import from_channels

    g = get_grid(grid)
    fc = TorchForecaster.build(parse_spec(preset)[1], PRODUCTION, g, seed=0)
    chans = PRODUCTION.state_channels
    # Plausible physical values (mid-range of each channel's bounds, small noise) at two input times.
    rng = np.random.default_rng(0)
    mid = np.array([(c.variable.valid_min + c.variable.valid_max) / 2 for c in chans], dtype=np.float32)
    ref = np.datetime64("2023-01-01T06", "ns")
    states = []
    for k, t in enumerate((ref - np.timedelta64(6, "h"), ref)):
        a = mid[:, None, None] + rng.standard_normal((len(chans), *g.shape), dtype=np.float32)
        states.append(from_channels(a, chans, g).expand_dims(time=[t]))
    initial = xr.concat(states, dim="time")
    del states
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    write_forecast(fc.rollout(initial, steps), out, {"run_id": "bench"}, overwrite=True)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    size = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file())
    print(json.dumps({"preset": preset, "steps": steps, "wall_seconds": wall, "peak_rss_bytes": peak,
                      "rss_before_rollout_bytes": rss0, "store_bytes": size}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="small,base",
                    help="comma-separated presets; a preset may override patch/window, e.g. small:patch=2x4x4:window=9x9")
    ap.add_argument("--grid", default="0.25deg")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    ap.add_argument("--steps", type=int, default=40, help="rollout length to extrapolate")
    ap.add_argument("--rollout", default="", help="also time a real streamed rollout of this preset "
                    "(generator -> Zarr, as `fuxiops forecast`) for --steps leads")
    ap.add_argument("--rollout-out", default="/tmp/fuxiops-bench-rollout.zarr", help="where that rollout is written")
    ap.add_argument("--merge", action="store_true", help="keep the rows of presets not rerun from the existing "
                    "model_step.json (each row keeps its own date and load average)")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--child-rollout", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--report-only", action="store_true", help="rewrite model_step.md from the JSON and print it")
    args = ap.parse_args()
    import os

    threads = args.threads or os.cpu_count() or 1
    if args.child and args.child_rollout:
        _child_rollout(args.child, args.grid, args.steps, args.rollout_out, threads)
        return
    if args.child:
        _child(args.child, args.grid, args.repeats, threads)
        return
    if args.report_only:
        from _common import RESULTS
        text = report(json.loads((RESULTS / "model_step.json").read_text()), args.steps)
        (RESULTS / "model_step.md").write_text(text + "\n")
        print(text)
        return

    import torch

    torch.set_num_threads(threads)
    from fuxiops.catalog import PRODUCTION
    from fuxiops.grids import get_grid
    from fuxiops.models.summary import summarise_forecaster

    load_start = os.getloadavg()
    rate = matmul_gflops()
    g = get_grid(args.grid)
    results: list[dict] = []
    for preset in args.presets.split(","):
        s = summarise_forecaster(parse_spec(preset)[1], PRODUCTION, g, preset)
        p = subprocess.run([sys.executable, __file__, "--child", preset, "--grid", args.grid, "--repeats",
                            str(args.repeats), "--threads", str(threads)], capture_output=True, text=True)
        if p.returncode != 0:
            results.append({"preset": preset, "error": p.stderr[-2000:]})
            continue
        child = json.loads(p.stdout.strip().splitlines()[-1])
        t = summary(child["times"])
        theory = s.flops_per_step / (rate["median"] * 1e9)
        res = {"preset": preset, "architecture": parse_spec(preset)[1].__dict__, "grid": g.name,
               "parameters": s.parameters, "flops_per_step": s.flops_per_step,
               "step_seconds": t, "theoretical_seconds_at_matmul_rate": theory,
               "fraction_of_ceiling": theory / t["median"], "peak_rss_bytes": child["peak_rss_bytes"],
               "rss_after_build_bytes": child["rss_after_build_bytes"],
               "traced_activation_peak_bytes": s.activation_peak_bytes,
               f"rollout_{args.steps}_steps_seconds_extrapolated": args.steps * t["median"]}
        res["measured_utc"] = machine_facts()["date_utc"]
        res["load_average"] = os.getloadavg()
        results.append(res)
    rollout = None
    if args.rollout:
        p = subprocess.run([sys.executable, __file__, "--child", args.rollout, "--child-rollout", "--grid", args.grid,
                            "--steps", str(args.steps), "--rollout-out", args.rollout_out, "--threads", str(threads)],
                           capture_output=True, text=True)
        rollout = (json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0
                   else {"preset": args.rollout, "error": p.stderr[-2000:]})
        rollout["measured_utc"] = machine_facts()["date_utc"]
        rollout["load_average_end"] = os.getloadavg()
        shutil.rmtree(args.rollout_out, ignore_errors=True)
    if args.merge:
        from _common import RESULTS
        old = RESULTS / "model_step.json"
        if old.exists():
            prev = json.loads(old.read_text())
            rerun = {r["preset"] for r in results}
            for r in prev.get("results", []):
                if r["preset"] not in rerun:
                    r.setdefault("measured_utc", prev["machine"]["date_utc"])
                    r.setdefault("load_average", prev.get("load_average_end"))
                    results.append(r)
            if rollout is None:
                rollout = prev.get("rollout")
    out = {"benchmark": "model_step", "machine": machine_facts(), "threads": threads,
           "packages": package_versions(["torch", "numpy", "fuxiops"]),
           "matmul_fp32_gflops": rate, "load_average_start": load_start, "load_average_end": os.getloadavg(),
           "grid": g.name, "variables": "production (69 state + tp6)",
           "results": results, "rollout": rollout,
           "notes": "PyTorch eager fp32 forward (inference mode), random weights, batch 1; theoretical time = "
                    "traced FLOPs / measured matmul rate; peak RSS of a fresh process (includes weights and "
                    "the Python runtime)."}
    path = write_result("model_step", out)
    text = report(out, args.steps)
    (path.parent / "model_step.md").write_text(text + "\n")
    print(text)
    print(f"wrote {path} and model_step.md")


def report(out: dict, steps: int = 40) -> str:
    """The Markdown report of a result JSON."""
    rate = out["matmul_fp32_gflops"]
    rows = []
    for r in out["results"]:
        if "error" in r:
            rows.append([r["preset"], "failed", "", "", "", "", "", "", ""])
            continue
        t = r["step_seconds"]
        theory = r["theoretical_seconds_at_matmul_rate"]
        rows.append([r["preset"], f"{r['parameters'] / 1e6:.2f} M", f"{r['flops_per_step'] / 1e9:.0f}",
                     f"{t['median']:.1f} ({t['min']:.1f}-{t['max']:.1f})", f"{theory:.1f}",
                     f"{100 * r['fraction_of_ceiling']:.0f}%", f"{r['peak_rss_bytes'] / 2 ** 30:.2f}",
                     f"{steps * t['median'] / 60:.1f}",
                     f"{r.get('measured_utc', '')[11:16]} / {(r.get('load_average') or [float('nan')])[0]:.1f}"])
    head = (f"Forecaster step at {out['grid']} ({out['variables']}), PyTorch eager fp32, {out['threads']} threads, "
            f"{out['machine']['cpu']} ({out['machine']['cores']} cores), {out['machine']['date_utc']}; "
            f"load average {tuple(round(x, 1) for x in out.get('load_average_start', ()))} -> "
            f"{tuple(round(x, 1) for x in out.get('load_average_end', ()))}\n\n"
            f"fp32 matmul rate: {rate['median']:.1f} GFLOP/s (min {rate['min']:.1f}, max {rate['max']:.1f})\n\n")
    text = head + markdown_table(["preset", "params", "GFLOP/step", "step s median (min-max)", "theory s",
                                  "of ceiling", "peak RSS GiB", f"{steps}-step min",
                                  "measured UTC / load"], rows)
    ro = out.get("rollout")
    if ro and "error" not in ro:
        text += (f"\n\nMeasured rollout ({ro['preset']}, {ro['steps']} steps streamed to Zarr as `fuxiops forecast` "
                 f"does): {ro['wall_seconds'] / 60:.1f} min, peak RSS {ro['peak_rss_bytes'] / 2 ** 30:.2f} GiB "
                 f"({ro['store_bytes'] / 2 ** 30:.1f} GiB written); finished {ro.get('measured_utc', '?')}, load average "
                 f"{tuple(round(x, 1) for x in ro.get('load_average_end', ()))}.")
    elif ro:
        text += f"\n\nRollout of {ro['preset']} failed: {ro['error'][-300:]}"
    return text

if __name__ == "__main__":
    main()
