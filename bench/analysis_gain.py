"""Where does an assimilator help and where does it hurt? One analysis, many backgrounds, side by side.

Cycling on its own backgrounds, each analysis of the shipped pair is slightly worse than its
background (bench/results/cycling_qc.md), while stage 2 trains it on NWP backgrounds 6-180 h old.
This benchmark makes one analysis (no cycling) at each of ``--times`` cycle times from the same
raw observations (operational QC against each background) for backgrounds of known error:

* ``reanalysis``: the training label itself;
* ``own 6h``: the forecaster's 6-hour forecast from the reanalysis (what the first cycles see);
* ``nwp 6-24h`` / ``nwp 30-72h`` / ``nwp 78-180h``: the world's NWP forecast valid then, raw
  (not debiased), from the shortest lead in the bucket that is available.

It reports, per pair and background, the temperature RMSE against the truth of background and
analysis (lat-weighted, mean over levels and times) and the share of times the analysis is closer
to the truth. An assimilator that only helps on old NWP backgrounds will not hold a cycle.

    python bench/analysis_gain.py --world /work/expworld --start 2023-02-02T00 --times 24 \\
        --pair short=FC,ASM
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import checkpoint_pairs, machine_facts, markdown_table, package_versions, write_result  # noqa: E402
from training_claims import LOWER_TROPOSPHERE, _lat_mean  # noqa: E402


#: Background kinds; the NWP ones are lead buckets (hours, inclusive).
NWP_BUCKETS = {"nwp 6-24h": (6, 24), "nwp 30-72h": (30, 72), "nwp 78-180h": (78, 180)}
KINDS = ["reanalysis", "own 6h", *NWP_BUCKETS]


def _t_errors(state: xr.Dataset, truth: xr.Dataset) -> tuple[float, float]:
    """T RMSE over all levels and over the lower troposphere, against the truth at the same time."""
    sq = _lat_mean((state["t"] - truth["t"]) ** 2)
    return float(np.sqrt(sq.mean())), float(np.sqrt(sq.sel(level=list(LOWER_TROPOSPHERE)).mean()))


def gain(forecaster: str, assimilator: str, world: str, start: str, n: int, every_h: int,
         log: str) -> dict[str, Any]:
    """Background and analysis T errors per background kind, averaged over the times (a rerun with the
    same checkpoints, world and times reads what the previous one left next to ``log``)."""
    done = Path(log).with_suffix(".json")
    key = {"forecaster": forecaster, "assimilator": assimilator, "world": world, "start": start, "times": n,
           "every_h": every_h, "mtime": [Path(p, "model.safetensors").stat().st_mtime_ns
                                         for p in (forecaster, assimilator)]}
    if done.is_file() and json.loads(done.read_text()).get("key") == key:
        return json.loads(done.read_text())["result"]
    out = _gain(forecaster, assimilator, world, start, n, every_h, log)
    done.write_text(json.dumps({"key": key, "result": out}))
    return out


def _gain(forecaster: str, assimilator: str, world: str, start: str, n: int, every_h: int,
          log: str) -> dict[str, Any]:
    import torch

    from fuxiops.models.torch_assimilator import TorchAssimilator
    from fuxiops.models.torch_forecaster import TorchForecaster
    from fuxiops.models.training.data import BackgroundPool, StateSeries, normalise_layout
    from fuxiops.models.training.experiments import assimilator_obs_stats, obs_for_cycle, offline_deployment
    from fuxiops.state import from_channels

    torch.set_num_threads(1)
    w = Path(world)
    fc, asm = TorchForecaster.load(forecaster), TorchAssimilator.load(assimilator)
    chans, grid = fc.coords.variables.state_channels, fc.coords.grid
    dep, stats = offline_deployment(fc), assimilator_obs_stats(asm, w)
    rean = StateSeries(xr.open_zarr(w / "reanalysis.zarr"), chans)
    truth = xr.open_zarr(w / "truth.zarr")
    pool = BackgroundPool(normalise_layout(xr.open_zarr(w / "nwp.zarr", consolidated=None, chunks=None)),
                          chans, min_lead=6, max_lead=180)
    h6 = np.timedelta64(6, "h")
    rows: dict[str, list[list[float]]] = {k: [] for k in KINDS}
    t0 = np.datetime64(start, "ns")
    with open(log, "a") as f, contextlib.redirect_stderr(f):
        for i in tqdm(range(n), desc=f"analyses {Path(log).stem}", file=f):
            t = t0 + i * np.timedelta64(every_h, "h")
            backgrounds = {"reanalysis": rean.at(t),
                           "own 6h": fc.step(np.stack([rean.at(t - 2 * h6), rean.at(t - h6)]), t - h6)[: len(chans)]}
            leads = pool.leads_valid_at(t)
            for kind, (lo, hi) in NWP_BUCKETS.items():
                inside = [lead for lead in leads if lo <= lead <= hi]
                if inside:
                    backgrounds[kind] = pool.background(t, min(inside))
            tr = truth.sel(time=t).load()
            for kind, bg in backgrounds.items():
                bg_ds = from_channels(bg, chans, grid).assign_coords(time=t)
                ana = asm.analyse(bg_ds, obs_for_cycle(w, "raw", t, dep, stats, background=bg_ds), t)
                rows[kind].append([*_t_errors(bg_ds, tr), *_t_errors(ana, tr)])
    out = {}
    for kind, r in rows.items():
        if not r:
            continue
        a = np.asarray(r)
        out[kind] = {"times": len(a), "background_t_rmse": float(a[:, 0].mean()),
                     "analysis_t_rmse": float(a[:, 2].mean()),
                     "background_low_trop_t_rmse": float(a[:, 1].mean()),
                     "analysis_low_trop_t_rmse": float(a[:, 3].mean()),
                     "analysis_closer": float((a[:, 2] < a[:, 0]).mean())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", required=True, help="testbed world folder (truth, reanalysis, nwp, obs)")
    ap.add_argument("--start", required=True, help="first cycle time (outside the training period)")
    ap.add_argument("--times", type=int, default=24, help="cycle times analysed")
    ap.add_argument("--every-h", type=int, default=6, help="hours between them")
    ap.add_argument("--pair", action="append", default=[], metavar="NAME=FORECASTER,ASSIMILATOR",
                    help="checkpoint pair (repeatable); the shipped pair always runs")
    ap.add_argument("--jobs", type=int, default=2, help="pairs at once (worker processes)")
    ap.add_argument("--work", default="bench/work/analysis_gain")
    ap.add_argument("--name", default="analysis_gain")
    a = ap.parse_args()
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    world, work = Path(a.world), Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    grid = xr.open_zarr(world / "truth.zarr").attrs.get("grid", "2.8125deg")
    pairs = {n: (str(c["forecaster"]), str(c["assimilator"])) for n, c in checkpoint_pairs(a.pair, grid).items()}
    with ProcessPoolExecutor(max(1, min(a.jobs, len(pairs))), mp_context=get_context("spawn")) as pool:
        futs = {n: pool.submit(gain, fc, asm, str(world), a.start, a.times, a.every_h, str(work / f"{n}.log"))
                for n, (fc, asm) in pairs.items()}
        runs = {n: f.result() for n, f in futs.items()}
    rows = []
    for n, r in runs.items():
        for kind, s in r.items():
            rows.append([n, kind, str(s["times"]), f"{s['background_t_rmse']:.3f}", f"{s['analysis_t_rmse']:.3f}",
                         f"{s['analysis_t_rmse'] - s['background_t_rmse']:+.3f}",
                         f"{s['background_low_trop_t_rmse']:.3f} / {s['analysis_low_trop_t_rmse']:.3f}",
                         f"{100 * s['analysis_closer']:.0f}%"])
    cmd = (f"python bench/analysis_gain.py --world {a.world} --start {a.start} --times {a.times} "
           f"--every-h {a.every_h}" + "".join(f" --pair {p}" for p in a.pair))
    table = markdown_table(["pair", "background", "times", "bg T RMSE (K)", "ana T RMSE (K)", "ana - bg (K)",
                            "low-trop T RMSE bg / ana (K)", "ana closer"], rows)
    md = (f"# {a.name}\n\nOne analysis per time from raw observations (operational QC against each background), "
          f"{a.times} times every {a.every_h} h from {a.start}, world `{a.world}`; T RMSE against the truth, "
          f"lat-weighted, mean over levels (lower troposphere: {', '.join(map(str, LOWER_TROPOSPHERE))} hPa) and "
          f"times.\n\n{table}\n\n`{cmd}`\n")
    write_result(a.name, {"command": cmd, "pairs": {n: {"forecaster": p[0], "assimilator": p[1]}
                                                   for n, p in pairs.items()},
                          "results": runs, "machine": machine_facts(),
                          "packages": package_versions(["torch", "numpy", "xarray"])})
    (Path(__file__).resolve().parent / "results" / f"{a.name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
