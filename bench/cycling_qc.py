"""Does the background check drive the cycling drift? One pair cycled twice, side by side.

The shipped pair drifts when it cycles on its own backgrounds (bench/results/cycling_stability.md).
Training gridded every raw observation; the cycle's QC rejects those with |O-B| > k * sigma_o
against the background it has. If the background drifts, the check removes the very observations
that would pull it back, and the drift feeds itself. This benchmark cycles the same pair from the
same cold start with the operational QC and with the background check off, and records per cycle
the temperature RMSE of background and analysis against the truth and how many observations the
background check rejected. Then, without cycling, it measures what the assimilator adds on
average: its mean increment (analysis - background) per level when the background is the
reanalysis itself (no NWP bias in it) and when it is the NWP's raw 6-hour forecast. A network that
learned to remove the NWP's bias removes it from both, and on the first that is the drift.

    python bench/cycling_qc.py --world /work/diagworld --start 2023-01-02T00 --cycles 120
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_facts, markdown_table, package_versions, write_result  # noqa: E402
from training_claims import _lat_mean, cycle_scores  # noqa: E402

from fuxiops.models.base import default_checkpoint  # noqa: E402

VARIANTS = {"qc": True, "no-background-check": False}


def _t_rmse(states: list[xr.Dataset], truth: xr.Dataset) -> list[float]:
    ds = xr.concat(states, "time")
    t = truth.sel(time=ds.time)
    return [float(x) for x in np.sqrt(_lat_mean((ds["t"] - t["t"]) ** 2).mean("level")).values]


def cycle_variant(forecaster: str, assimilator: str, world: str, start: str, n: int, check: bool,
                  out: str, log: str) -> dict[str, Any]:
    """Cycle once; background and analysis T RMSE and the QC summary of every cycle."""
    import torch

    from fuxiops.models.torch_assimilator import TorchAssimilator
    from fuxiops.models.torch_forecaster import TorchForecaster
    from fuxiops.models.training.experiments import cycle_offline

    done = Path(out).with_suffix(".json")
    key = {"forecaster": forecaster, "assimilator": assimilator, "world": world, "start": start, "cycles": n}
    if done.is_file() and Path(out).exists():  # a rerun rescores what an identical run left
        prior = json.loads(done.read_text())
        if prior.get("key") == key:
            return prior["run"]
    torch.set_num_threads(1)
    fc, asm = TorchForecaster.load(forecaster), TorchAssimilator.load(assimilator)
    reports: list[dict[str, Any]] = []
    bgs, anas = [], []
    with open(log, "a") as f, contextlib.redirect_stderr(f):
        for bg, ana in cycle_offline(fc, asm, Path(world), start, n, "raw", background_check=check,
                                     qc_reports=reports):
            bgs.append(bg)
            anas.append(ana)
    xr.concat(anas, "time").to_zarr(out, mode="w")
    truth = xr.open_zarr(Path(world) / "truth.zarr")
    run = {"background_t_rmse": _t_rmse(bgs, truth), "analysis_t_rmse": _t_rmse(anas, truth), "qc": reports}
    done.write_text(json.dumps({"key": key, "run": run}))
    return run


def mean_increments(forecaster: str, assimilator: str, world: str, start: str, n: int) -> dict[str, Any]:
    """Mean lat-weighted T increment per level over the cycle times where a 6-hour NWP forecast is valid,
    for two backgrounds at the same times: the reanalysis state and that NWP forecast, raw; operational
    QC against each background."""
    import torch

    from fuxiops.models.torch_assimilator import TorchAssimilator
    from fuxiops.models.torch_forecaster import TorchForecaster
    from fuxiops.models.training.data import BackgroundPool, StateSeries, normalise_layout
    from fuxiops.models.training.experiments import assimilator_obs_stats, obs_for_cycle, offline_deployment
    from fuxiops.state import from_channels

    torch.set_num_threads(1)
    fc, asm = TorchForecaster.load(forecaster), TorchAssimilator.load(assimilator)
    chans, grid = fc.coords.variables.state_channels, fc.coords.grid
    dep, stats = offline_deployment(fc), assimilator_obs_stats(asm, Path(world))
    rean = StateSeries(xr.open_zarr(Path(world) / "reanalysis.zarr"), chans)
    pool = BackgroundPool(normalise_layout(xr.open_zarr(Path(world) / "nwp.zarr", consolidated=None, chunks=None)),
                          chans, min_lead=6, max_lead=6)
    t0 = np.datetime64(start, "ns")
    sums: dict[str, list[np.ndarray]] = {"reanalysis": [], "nwp_6h": []}
    for k in range(n):
        t = t0 + k * np.timedelta64(6, "h")
        leads = pool.leads_valid_at(t)
        if not leads:
            continue
        for name, bg in (("reanalysis", rean.at(t)), ("nwp_6h", pool.background(t, leads[0]))):
            bg_ds = from_channels(bg, chans, grid).assign_coords(time=t)
            ana = asm.analyse(bg_ds, obs_for_cycle(Path(world), "raw", t, dep, stats, background=bg_ds), t)
            sums[name].append(_lat_mean(ana["t"] - bg_ds["t"]).values.ravel())
    return {name: {"times": len(v), "mean_t_increment": [float(x) for x in np.mean(v, axis=0)]}
            for name, v in sums.items() if v}


def drift_signature(ana: xr.Dataset, world: Path, cycles: int) -> dict[str, Any]:
    """Per level: how fast the global-mean T analysis bias grows over the first ``cycles`` cycles (its
    linear phase), next to the NWP's mean 6-hour-forecast bias against the reanalysis over the same
    period, which an assimilator trained on raw NWP backgrounds learns to remove."""
    from fuxiops.models.training.data import normalise_layout

    truth = xr.open_zarr(world / "truth.zarr")
    rean = xr.open_zarr(world / "reanalysis.zarr")
    a = ana["t"].isel(time=slice(0, cycles))
    bias = _lat_mean(a - truth["t"].sel(time=a.time)).load()
    slope = np.polyfit(np.arange(bias.sizes["time"]), bias.transpose("time", "level").values, 1)[0]
    nwp = normalise_layout(xr.open_zarr(world / "nwp.zarr", consolidated=None, chunks=None))
    steps = nwp["step"].values.astype(int)
    lead = int(steps[steps >= 6].min())
    fc = nwp["t"].sel(step=lead)
    valid = fc["time"].values + np.timedelta64(lead, "h")
    keep = (valid >= a.time.values[0]) & (valid <= ana.time.values[-1])
    fc = fc.isel(time=np.flatnonzero(keep))
    ref = rean["t"].sel(time=valid[keep]).assign_coords(time=fc.time.values)
    nwp_bias = _lat_mean(fc - ref).mean("time").load().values
    return {"levels_hpa": [int(x) for x in a.level.values], "cycles": cycles,
            "analysis_bias_growth_per_cycle": [float(x) for x in slope], "nwp_lead_h": lead,
            "nwp_initialisations": int(keep.sum()), "nwp_bias_vs_reanalysis": [float(x) for x in nwp_bias],
            "correlation": float(np.corrcoef(slope, nwp_bias)[0, 1]),
            "regression": float(np.polyfit(nwp_bias, slope, 1)[0])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", required=True, help="testbed world folder (truth, reanalysis, nwp, obs)")
    ap.add_argument("--start", required=True, help="first cycle")
    ap.add_argument("--cycles", type=int, default=120)
    ap.add_argument("--forecaster", default=None, help="default: the shipped checkpoint of the world's grid")
    ap.add_argument("--assimilator", default=None)
    ap.add_argument("--work", default="bench/work/cycling_qc")
    ap.add_argument("--name", default="cycling_qc")
    a = ap.parse_args()
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    world, work = Path(a.world), Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    grid = xr.open_zarr(world / "truth.zarr").attrs.get("grid", "2.8125deg")
    fc = a.forecaster or str(default_checkpoint(grid, "forecaster"))
    asm = a.assimilator or str(default_checkpoint(grid, "assimilator"))
    with ProcessPoolExecutor(len(VARIANTS), mp_context=get_context("spawn")) as pool:
        futs = {v: pool.submit(cycle_variant, fc, asm, str(world), a.start, a.cycles, check,
                               str(work / f"{v}_analyses.zarr"), str(work / f"{v}.log"))
                for v, check in VARIANTS.items()}
        inc_f = pool.submit(mean_increments, fc, asm, str(world), a.start, a.cycles)
        runs = {v: f.result() for v, f in futs.items()}
        increments = inc_f.result()
    truth, rean = xr.open_zarr(world / "truth.zarr"), xr.open_zarr(world / "reanalysis.zarr")
    rows, per_cycle = [], []
    for v, r in runs.items():
        sc = cycle_scores(xr.open_zarr(work / f"{v}_analyses.zarr"), truth, rean)
        rej = np.array([q["background_rejected"] / max(1, q["rows"]) for q in r["qc"]])
        used = np.array([q["used"] / max(1, q["rows"]) for q in r["qc"]])
        bg = np.asarray(r["background_t_rmse"])
        ana = np.asarray(r["analysis_t_rmse"])
        r["summary"] = {
            "analysis_t_rmse_first10": float(ana[:10].mean()), "analysis_t_rmse_last10": float(ana[-10:].mean()),
            "analysis_t_rmse_trend_per_cycle": sc["analysis_t_rmse_trend_per_cycle"],
            "background_t_rmse_first10": float(bg[:10].mean()), "background_t_rmse_last10": float(bg[-10:].mean()),
            "analysis_better_than_background": float((ana < bg).mean()),
            "background_rejected_first10": float(rej[:10].mean()),
            "background_rejected_last10": float(rej[-10:].mean()),
            "used_first10": float(used[:10].mean()), "used_last10": float(used[-10:].mean()),
            "lower_trop_t_rmse_analysis": sc["lower_trop_t_rmse_analysis"],
            "lower_trop_t_rmse_reanalysis": sc["lower_trop_t_rmse_reanalysis"]}
        s = r["summary"]
        rows.append([v, f"{s['background_t_rmse_first10']:.2f} / {s['background_t_rmse_last10']:.2f}",
                     f"{s['analysis_t_rmse_first10']:.2f} / {s['analysis_t_rmse_last10']:.2f}",
                     f"{s['analysis_t_rmse_trend_per_cycle']:+.3f}",
                     f"{100 * s['analysis_better_than_background']:.0f}%",
                     f"{100 * s['background_rejected_first10']:.1f}% / {100 * s['background_rejected_last10']:.1f}%",
                     f"{100 * s['used_first10']:.1f}% / {100 * s['used_last10']:.1f}%",
                     f"{s['lower_trop_t_rmse_analysis']:.2f} (rean {s['lower_trop_t_rmse_reanalysis']:.2f})"])
    sig = drift_signature(xr.open_zarr(work / "qc_analyses.zarr"), world, min(20, a.cycles))
    for k in range(0, a.cycles, max(1, a.cycles // 12)):
        cells = []
        for v in VARIANTS:
            q = runs[v]["qc"][k]
            cells.append(f"{runs[v]['background_t_rmse'][k]:.2f} / {runs[v]['analysis_t_rmse'][k]:.2f} / "
                         f"{100 * q['background_rejected'] / max(1, q['rows']):.1f}%")
        per_cycle.append([str(k + 1), runs["qc"]["qc"][k]["cycle"], *cells])
    cmd = (f"python bench/cycling_qc.py --world {a.world} --start {a.start} --cycles {a.cycles}"
           + (f" --forecaster {a.forecaster}" if a.forecaster else "")
           + (f" --assimilator {a.assimilator}" if a.assimilator else ""))
    spec = json.loads((world / "world.json").read_text())["spec"]
    world_desc = (f"{spec['days']} days from {spec['start'][:13]}, seed {spec['seed']}, grid {spec['grid']}, "
                  f"NWP every {spec['nwp_every_h']} h (built by `fuxiops world build --out {a.world} --days "
                  f"{spec['days']} --seed {spec['seed']} --nwp-every-h {spec['nwp_every_h']}`)")
    md = "\n".join([
        "# Cycling with and without the background check", "",
        f"Pair: forecaster `{fc}`, assimilator `{asm}`; world `{a.world}`, {a.cycles} cycles from {a.start}, "
        "raw observations, cold start from the world's NWP. Temperature RMSE (K) vs the truth, lat-weighted, "
        "mean over levels; rejected: share of all observation rows the background check (|O-B| > k sigma_o) "
        "rejected; used: share of rows that passed every QC step.", "",
        f"World: {world_desc}.", "",
        f"Command: `{cmd}`", "",
        markdown_table(["variant", "background T RMSE first10 / last10", "analysis T RMSE first10 / last10",
                        "trend (K/cycle)", "analysis beats background", "rejected by background check first10 / last10",
                        "used first10 / last10", "lower-trop T RMSE"], rows), "",
        "Per cycle (background T RMSE / analysis T RMSE / rejected by the background check):", "",
        markdown_table(["cycle", "time"] + list(VARIANTS), per_cycle), "",
        f"## Drift signature (qc variant, first {sig['cycles']} cycles)", "",
        "Growth per cycle of the global-mean T analysis bias vs truth, per level, next to the world's NWP "
        f"mean {sig['nwp_lead_h']}-hour forecast bias vs the reanalysis over the same days "
        f"({sig['nwp_initialisations']} initialisations). Correlation across levels "
        f"{sig['correlation']:+.2f}; regression slope {sig['regression']:+.3f} K/cycle per K of NWP bias.", "",
        f"Mean T increment (analysis - background, no cycling) at the {increments['reanalysis']['times']} cycle "
        "times where a 6-hour NWP forecast is valid, with the reanalysis as the background and with that NWP "
        "forecast (raw) as the background.", "",
        markdown_table(["level (hPa)", "analysis bias growth (K/cycle)", "NWP bias vs reanalysis (K)",
                        "mean increment, reanalysis background (K)", "mean increment, NWP 6-h background (K)"],
                       [[lv, f"{g:+.3f}", f"{b:+.2f}", f"{ir:+.3f}", f"{inw:+.3f}"] for lv, g, b, ir, inw in zip(
                           sig["levels_hpa"], sig["analysis_bias_growth_per_cycle"], sig["nwp_bias_vs_reanalysis"],
                           increments["reanalysis"]["mean_t_increment"],
                           increments["nwp_6h"]["mean_t_increment"])]),
        ""])
    write_result(a.name, {"command": cmd, "machine": machine_facts(),
                          "versions": package_versions(["fuxiops", "torch", "numpy"]),
                          "forecaster": fc, "assimilator": asm, "world": a.world, "start": a.start,
                          "cycles": a.cycles, "variants": runs, "drift_signature": sig,
                          "mean_increments": increments})
    (Path(__file__).resolve().parent / "results" / f"{a.name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
