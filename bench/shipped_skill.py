"""Forecast skill of the shipped forecaster on the testbed's test period, against the hidden truth.

Forecasts start from the world's reanalysis (two states, 6 h apart) at initialisations
after the training period and are scored with latitude-weighted RMSE against the truth
for Z500, T850, T2M, U10 and MSL at days 1, 3 and 5. Peers, in the same run: another
forecaster checkpoint (``--baseline``, e.g. the previously shipped one), persistence of
the truth, and the world's operational NWP (started from the same reanalysis).

    python bench/shipped_skill.py --world /work/yearworld --start 2024-01-02T00 --inits 12 \
        --baseline /path/to/previous/forecaster
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_facts, markdown_table, package_versions, write_result  # noqa: E402

from fuxiops.models.base import load_forecaster  # noqa: E402
from fuxiops.models.training.experiments import forecasts_from_analyses  # noqa: E402
from fuxiops.scorecard import persistence_forecast, score_system  # noqa: E402

CHANNELS = ("z500", "t850", "t2m", "u10", "msl")
DAYS = (1, 3, 5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", required=True, help="testbed world folder (truth, reanalysis, nwp)")
    ap.add_argument("--start", required=True, help="first initialisation (after the training period)")
    ap.add_argument("--inits", type=int, default=12, help="initialisations, every --every-h hours")
    ap.add_argument("--every-h", type=int, default=48)
    ap.add_argument("--checkpoint", default="default", help="the forecaster scored (default: the shipped one)")
    ap.add_argument("--baseline", action="append", default=[], metavar="NAME=DIR",
                    help="another forecaster checkpoint to score side by side (repeatable)")
    ap.add_argument("--name", default="shipped_skill")
    a = ap.parse_args()
    world = Path(a.world)
    truth = xr.open_zarr(world / "truth.zarr")
    rean = xr.open_zarr(world / "reanalysis.zarr")
    nwp = xr.open_zarr(world / "nwp.zarr")
    steps = 4 * max(DAYS)
    inits = [np.datetime64(pd.Timestamp(a.start), "ns") + np.timedelta64(a.every_h * k, "h") for k in range(a.inits)]
    last = truth.time.values[-1] - np.timedelta64(6 * steps, "h")
    inits = [t for t in inits if t <= last]
    if not inits:
        raise SystemExit(f"no initialisation from {a.start} has {max(DAYS)} days of truth after it")
    systems: dict[str, xr.Dataset] = {}
    models = {"shipped": a.checkpoint, **dict(b.split("=", 1) for b in a.baseline)}
    grid = truth.attrs.get("grid", "2.8125deg")
    with tempfile.TemporaryDirectory() as tmp:
        for name, ckpt in models.items():
            fc = load_forecaster(ckpt, grid=grid)
            systems[name] = xr.open_zarr(forecasts_from_analyses(fc, rean, inits, steps, Path(tmp) / f"{name}.zarr"))
        lead_h = np.asarray(systems["shipped"]["step"].values)
        nwp_inits = [t for t in inits if t in set(nwp.time.values)]
        systems["nwp"] = nwp.sel(time=nwp_inits, step=[s for s in nwp.step.values if s in set(lead_h.tolist())])
        systems["persistence"] = persistence_forecast(truth[list(systems["shipped"].data_vars)], np.array(inits),
                                                      lead_h)
        tables = []
        for name, ds in systems.items():
            df = score_system(ds, truth, ("rmse",))
            df["system"] = name
            tables.append(df)
    sc = pd.concat(tables)
    sc = sc[sc.channel.isin(CHANNELS) & sc.step.isin([24 * d for d in DAYS])]
    table = sc.pivot_table(index=["channel", "step"], columns="system", values="value")
    order = ["shipped", *[n for n in models if n != "shipped"], "nwp", "persistence"]
    rows = [[ch, f"{step // 24}", *(f"{table.loc[(ch, step), s]:.3f}" for s in order)]
            for ch in CHANNELS for step in (24 * d for d in DAYS) if (ch, step) in table.index]
    beats = {s: float((table["shipped"] < table[s]).mean()) for s in order[1:]}
    result = {"machine": machine_facts(), "packages": package_versions(["fuxiops", "torch"]),
              "world": str(world), "inits": [str(t) for t in inits], "checkpoints": models,
              "rmse": {f"{ch}/{step}h": {s: float(table.loc[(ch, step), s]) for s in order}
                       for ch, step in table.index},
              "shipped_beats_share": beats}
    write_result(a.name, result)
    headers = ["channel", "day", *order]
    text = "\n".join([f"# {a.name}", "", f"lat-weighted RMSE vs truth, {len(inits)} initialisations from the "
                      f"reanalysis, {inits[0]} .. {inits[-1]}", "", markdown_table(headers, rows), "",
                      "share of (channel, day) cells where the shipped forecaster beats: " +
                      ", ".join(f"{s} {v:.0%}" for s, v in beats.items()), ""])
    print(text)
    (Path(__file__).resolve().parent / "results" / f"{a.name}.md").write_text(text)


if __name__ == "__main__":
    main()
