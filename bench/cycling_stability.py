"""Claims 1 and 2 of the training issue for already trained checkpoint pairs, side by side.

Each pair (forecaster + assimilator) cycles on its own 6-hour backgrounds with raw
observations from ``--start`` (a test period the training never saw), exactly as
``bench/training_claims.py`` does for the variants it trains; then 10-day forecasts
start from its analyses. Scored against the world's hidden truth:

* claim 2: temperature analysis RMSE per cycle has no upward trend, and the
  lower-tropospheric temperature analysis is closer to the truth than the reanalysis;
* claim 1: forecasts from the analyses beat persistence at every lead and the world's
  NWP in at least 80% of (variable, lead) cells.

    python bench/cycling_stability.py --world /work/yearworld --start 2024-01-01T00 --cycles 120 \\
        --pair previous=/tmp/old/forecaster,/tmp/old/assimilator
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import checkpoint_pairs, machine_facts, markdown_table, package_versions, write_result  # noqa: E402
from training_claims import cycle_scores, cycle_variants, cycling_claim, forecast_claim  # noqa: E402



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", required=True, help="testbed world folder (truth, reanalysis, nwp, obs)")
    ap.add_argument("--start", required=True, help="first cycle (after the training period)")
    ap.add_argument("--cycles", type=int, default=120)
    ap.add_argument("--pair", action="append", default=[], metavar="NAME=FORECASTER,ASSIMILATOR",
                    help="another checkpoint pair cycled side by side (repeatable); the shipped pair runs too unless --no-shipped")
    ap.add_argument("--forecast-every", type=int, default=4, help="cycles between 10-day forecasts")
    ap.add_argument("--forecast-steps", type=int, default=40)
    ap.add_argument("--spinup-cycles", type=int, default=8, help="cycles before the first forecast")
    ap.add_argument("--no-shipped", action="store_true", help="cycle only the --pair pairs")
    ap.add_argument("--jobs", type=int, default=2, help="pairs cycling at once (worker processes)")
    ap.add_argument("--work", default="bench/work/cycling")
    ap.add_argument("--name", default="cycling_stability")
    a = ap.parse_args()
    world, work = Path(a.world), Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    grid = xr.open_zarr(world / "truth.zarr").attrs.get("grid", "2.8125deg")
    pairs = checkpoint_pairs(a.pair, grid, shipped=not a.no_shipped)
    if not pairs:
        raise SystemExit("nothing to cycle: --no-shipped needs at least one --pair")
    for name in pairs:  # a rerun cycles again (the checkpoints may have changed)
        shutil.rmtree(work / f"{name}_analyses.zarr", ignore_errors=True)
    stores = cycle_variants({n: (c, {}) for n, c in pairs.items()}, world, a.start, a.cycles, work, a.jobs)
    truth = xr.open_zarr(world / "truth.zarr")
    rean = xr.open_zarr(world / "reanalysis.zarr")
    result = {"machine": machine_facts(), "packages": package_versions(["fuxiops", "torch"]), "world": str(world),
              "start": a.start, "cycles": a.cycles, "pairs": {}}
    rows = []
    for name, ckpts in pairs.items():
        ana = xr.open_zarr(stores[name]).load()
        scores = cycle_scores(ana, truth, rean)
        c2 = cycling_claim(scores)
        c1 = forecast_claim(ckpts["forecaster"], ana, world, truth, a.spinup_cycles, a.forecast_every,
                            a.forecast_steps, work / f"{name}_forecasts.zarr")
        result["pairs"][name] = {"checkpoints": {k: str(v) for k, v in ckpts.items()}, **scores,
                                 "claim_2_cycling": c2, "claim_1_forecasts": c1}
        rows.append([name, f"{scores['analysis_t_rmse_first10']:.2f}", f"{scores['analysis_t_rmse_last10']:.2f}",
                     f"{scores['analysis_t_rmse_trend_per_cycle']:+.4f}",
                     f"{scores['lower_trop_t_rmse_analysis']:.2f} / {scores['lower_trop_t_rmse_reanalysis']:.2f}",
                     f"{scores['lower_trop_t_bias_analysis']:+.2f} / {scores['lower_trop_t_bias_reanalysis']:+.2f}",
                     "pass" if c2["passed"] else "FAIL",
                     f"{c1.get('share_cells_beating_nwp', float('nan')):.0%}",
                     "yes" if c1.get("beats_persistence_at_every_lead") else "no",
                     "pass" if c1["passed"] else "FAIL"])
    write_result(a.name, result)
    headers = ["pair", "T RMSE cycles 1-10 (K)", "T RMSE last 10 (K)", "trend (K/cycle)",
               "low-trop T RMSE ana / rean (K)", "low-trop T bias ana / rean (K)", "claim 2",
               "cells beating NWP", "beats persistence every lead", "claim 1"]
    text = "\n".join([f"# {a.name}", "", f"{a.cycles} cycles on own backgrounds with raw observations from "
                      f"{a.start}; T RMSE is the lat-weighted RMSE vs truth averaged over levels; forecasts "
                      f"(10 days) from every {a.forecast_every}th analysis after {a.spinup_cycles} cycles.", "",
                      markdown_table(headers, rows), ""])
    print(text)
    print(json.dumps({n: p["claim_1_forecasts"] for n, p in result["pairs"].items()}, indent=1, default=str))
    (Path(__file__).resolve().parent / "results" / f"{a.name}.md").write_text(text)


if __name__ == "__main__":
    main()
