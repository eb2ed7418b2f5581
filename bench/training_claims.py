"""The paper's claims, measured against the testbed world's hidden truth (issue: training).

Trains the full method and its ablations from one campaign YAML, cycles each
on its own backgrounds with raw observations over a test period the training
never saw, and scores analyses and 10-day forecasts against the truth:

1. forecasts from fuxiops analyses vs persistence (every lead) and vs the
   world's operational NWP (share of (variable, lead) cells, target >= 80%);
2. 120 cycles on own backgrounds: no upward trend of analysis RMSE; lower-
   tropospheric temperature analysis closer to the truth than the reanalysis;
3. ablations at equal compute: no recursive unrolling, reanalysis-only labels
   (no L_obs: does the reanalysis' temperature bias survive?), raw-only
   observations in training.

A claim that fails is reported as failed with its numbers.

    python bench/training_claims.py --campaign campaign.yaml --test-start 2024-01-01T00 --cycles 120
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_facts, markdown_table, package_versions, write_result  # noqa: E402

from fuxiops import metrics  # noqa: E402
from fuxiops.models.torch_assimilator import TorchAssimilator  # noqa: E402
from fuxiops.models.torch_forecaster import TorchForecaster  # noqa: E402
from fuxiops.models.training.config import load_train_config  # noqa: E402
from fuxiops.models.training.experiments import cycle_offline, forecasts_from_analyses  # noqa: E402
from fuxiops.models.training.stages import STAGE_FUNCTIONS, STAGES, final_checkpoints  # noqa: E402
from fuxiops.scorecard import compare, persistence_forecast, score_system  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_unroll": {"skip": ["unroll"]},
    "reanalysis_labels": {"assimilator": {"obs_weight": 0.0}, "unroll": {"obs_weight": 0.0}},
    "raw_only": {"assimilator": {"sim_fraction": 0.0}, "unroll": {"sim_fraction": 0.0}},
}
LOWER_TROPOSPHERE = (700, 850, 925, 1000)


def _train(base: dict[str, Any], variant: str, work: Path) -> dict[str, Path]:
    spec = VARIANTS[variant]
    data = json.loads(json.dumps(base))
    for stage in ("assimilator", "unroll"):
        if stage in spec:
            data[stage] = {**data.get(stage, {}), **spec[stage]}
    data["out"] = str(work / variant)
    (work / f"{variant}.json").write_text(json.dumps(data, default=str))
    from fuxiops.models.training.config import TrainConfig

    cfg = TrainConfig(**data)
    for s in STAGES:
        if s in spec.get("skip", []):
            continue
        STAGE_FUNCTIONS[s](cfg)
    return final_checkpoints(cfg)


def _lat_mean(x: xr.DataArray) -> xr.DataArray:
    return (x * metrics.lat_weights(x)).mean(("latitude", "longitude"))


def _cycle(ckpts: dict[str, Path], world: Path, start: str, n: int) -> tuple[xr.Dataset, xr.Dataset]:
    fc = TorchForecaster.load(ckpts["forecaster"])
    asm = TorchAssimilator.load(ckpts["assimilator"])
    bgs, anas = [], []
    for bg, ana in cycle_offline(fc, asm, world, start, n, "raw"):
        bgs.append(bg)
        anas.append(ana)
    return xr.concat(bgs, "time"), xr.concat(anas, "time")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--campaign", required=True, help="training campaign YAML (the full method)")
    ap.add_argument("--test-start", required=True, help="first cycle of the test period (after training)")
    ap.add_argument("--cycles", type=int, default=120)
    ap.add_argument("--forecast-every", type=int, default=2, help="cycles between 10-day forecasts")
    ap.add_argument("--forecast-steps", type=int, default=40)
    ap.add_argument("--spinup-cycles", type=int, default=8, help="cycles before the first forecast")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--work", default="bench/work/claims")
    ap.add_argument("--name", default="training_claims")
    args = ap.parse_args()
    import yaml

    base = yaml.safe_load(Path(args.campaign).read_text())
    cfg0 = load_train_config(args.campaign)
    world = cfg0.world_path
    truth = xr.open_zarr(world / "truth.zarr")
    rean = xr.open_zarr(world / "reanalysis.zarr")
    test_start = np.datetime64(pd.Timestamp(args.test_start), "ns")
    if test_start <= np.datetime64(cfg0.train_period.end, "ns"):
        raise SystemExit("the test period must start after the training period ends")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"machine": machine_facts(), "packages": package_versions(["torch", "dinosaur"]),
                              "campaign": base, "test_start": str(test_start), "cycles": args.cycles,
                              "variants": {}, "claims": {}}
    analyses: dict[str, xr.Dataset] = {}
    for variant in args.variants.split(","):
        ckpts = _train(base, variant, work)
        bg, ana = _cycle(ckpts, world, args.test_start, args.cycles)
        ana.to_zarr(work / f"{variant}_analyses.zarr", mode="w")
        analyses[variant] = ana
        t = truth.sel(time=ana.time)
        per_cycle = np.sqrt(_lat_mean((ana["t"] - t["t"]) ** 2).mean("level")).values
        slope = float(np.polyfit(np.arange(len(per_cycle)), per_cycle, 1)[0])
        lt = list(LOWER_TROPOSPHERE)
        bias_ana = float(_lat_mean(ana["t"].sel(level=lt) - t["t"].sel(level=lt)).mean())
        rmse_ana = float(np.sqrt(_lat_mean((ana["t"].sel(level=lt) - t["t"].sel(level=lt)) ** 2).mean()))
        r = rean.sel(time=ana.time)
        bias_rean = float(_lat_mean(r["t"].sel(level=lt) - t["t"].sel(level=lt)).mean())
        rmse_rean = float(np.sqrt(_lat_mean((r["t"].sel(level=lt) - t["t"].sel(level=lt)) ** 2).mean()))
        result["variants"][variant] = {
            "checkpoints": {k: str(v) for k, v in ckpts.items()},
            "analysis_t_rmse_first10": float(per_cycle[:10].mean()), "analysis_t_rmse_last10":
                float(per_cycle[-10:].mean()), "analysis_t_rmse_trend_per_cycle": slope,
            "lower_trop_t_bias_analysis": bias_ana, "lower_trop_t_bias_reanalysis": bias_rean,
            "lower_trop_t_rmse_analysis": rmse_ana, "lower_trop_t_rmse_reanalysis": rmse_rean,
            "mean_analysis_rmse_all_channels": float(np.mean([
                float(np.sqrt(_lat_mean((ana[v] - t[v]) ** 2).mean())) for v in ana.data_vars]))}
    full = result["variants"].get("full")
    if full:
        ana = analyses["full"]
        ckpts = {k: Path(v) for k, v in full["checkpoints"].items()}
        fc = TorchForecaster.load(ckpts["forecaster"])
        inits = list(ana.time.values[args.spinup_cycles::args.forecast_every])
        fpath = forecasts_from_analyses(fc, ana, inits, args.forecast_steps, work / "full_forecasts.zarr")
        fx = xr.open_zarr(fpath)
        nwp = xr.open_zarr(world / "nwp.zarr")
        nwp = nwp.sel(time=[t for t in inits if t in set(nwp.time.values)], step=fx.step.values)
        scores = []
        for name, ds in (("fuxiops", fx), ("nwp", nwp),
                         ("persistence", persistence_forecast(truth[list(fx.data_vars)], np.array(inits),
                                                              fx.step.values))):
            df = score_system(ds, truth, ("rmse",))
            df["system"] = name
            scores.append(df)
        sc = pd.concat(scores)
        sc.to_csv(work / "forecast_scores.csv", index=False)
        vs_nwp = compare(sc, "fuxiops", "nwp")
        vs_pers = compare(sc, "fuxiops", "persistence")
        leads_beaten = vs_pers.table.groupby(level="step")["better"].all()
        result["claims"]["1_forecasts"] = {
            "share_cells_beating_nwp": vs_nwp.share, "cells": vs_nwp.cells, "target": 0.8,
            "passed": bool(vs_nwp.share >= 0.8 and leads_beaten.all()),
            "beats_persistence_at_every_lead": bool(leads_beaten.all()),
            "nwp_inits_matched": int(nwp.sizes["time"])}
        result["claims"]["2_cycling"] = {
            "trend_per_cycle": full["analysis_t_rmse_trend_per_cycle"],
            "lower_trop_t_rmse_analysis": full["lower_trop_t_rmse_analysis"],
            "lower_trop_t_rmse_reanalysis": full["lower_trop_t_rmse_reanalysis"],
            "passed": bool(full["analysis_t_rmse_trend_per_cycle"] <= 0
                           and full["lower_trop_t_rmse_analysis"] < full["lower_trop_t_rmse_reanalysis"])}
    abl = {}
    v = result["variants"]
    if "full" in v and "no_unroll" in v:
        abl["no_unroll_worse"] = v["no_unroll"]["mean_analysis_rmse_all_channels"] > \
            v["full"]["mean_analysis_rmse_all_channels"]
    if "full" in v and "reanalysis_labels" in v:
        b_full = abs(v["full"]["lower_trop_t_bias_analysis"])
        b_rean = abs(v["full"]["lower_trop_t_bias_reanalysis"])
        abl["bias_removed_fraction"] = 1 - b_full / b_rean if b_rean else float("nan")
        abl["reanalysis_labels_keep_bias"] = abs(v["reanalysis_labels"]["lower_trop_t_bias_analysis"]) > b_full
        abl["full_removes_half_the_bias"] = abl["bias_removed_fraction"] >= 0.5
    if "full" in v and "raw_only" in v:
        abl["raw_only_worse"] = v["raw_only"]["mean_analysis_rmse_all_channels"] > \
            v["full"]["mean_analysis_rmse_all_channels"]
    result["claims"]["3_ablations"] = abl
    path = write_result(args.name, result)
    rows = [[k, f"{d['mean_analysis_rmse_all_channels']:.4g}", f"{d['analysis_t_rmse_trend_per_cycle']:+.2e}",
             f"{d['lower_trop_t_bias_analysis']:+.3f}", f"{d['lower_trop_t_bias_reanalysis']:+.3f}"]
            for k, d in v.items()]
    print(markdown_table(["variant", "analysis RMSE (all ch.)", "T RMSE trend / cycle", "low-trop T bias (ana)",
                          "low-trop T bias (reanalysis)"], rows))
    print(json.dumps(result["claims"], indent=1, default=str))
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
