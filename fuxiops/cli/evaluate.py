"""``fuxiops evaluate``: score forecast stores against a reference and write a scorecard."""

from __future__ import annotations

from pathlib import Path

import typer

from fuxiops.cli.common import config_option, console, use_config
from fuxiops.errors import FuxiopsError


def _named(spec: str) -> tuple[str, str]:
    """``name=path`` or ``path`` (name = the file stem)."""
    if "=" in spec and not spec.startswith("="):
        name, _, path = spec.partition("=")
        return name, path
    return Path(spec.rstrip("/")).stem, spec


def evaluate(
    forecast: str = typer.Option(..., "--forecast", "-f", help="Forecast store (Zarr/NetCDF, or a glob of stores; "
                                 "NAME=PATH to name it)."),
    reference: Path = typer.Option(..., "--reference", "-r", help="Reference store (truth or reanalysis) with a "
                                   "time dimension."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for scores.csv, scorecard.md/png, summary.json."),
    baseline: list[str] = typer.Option([], "--baseline", "-b", help="Baseline forecast store(s), NAME=PATH allowed; "
                                       "repeat the option for several."),
    persistence: bool = typer.Option(True, "--persistence/--no-persistence",
                                     help="Also score persistence (the reference at initialisation time)."),
    metric: str = typer.Option("rmse", "--metric", help="Metric for the cell-by-cell comparison (rmse, mae)."),
    config: Path | None = config_option(),
) -> None:
    """Score forecasts and baselines against a reference; write a scorecard (variables x leads, Markdown + PNG)
    and the share of (variable, lead) cells where the forecast beats each baseline."""
    import pandas as pd

    from fuxiops.scorecard import open_forecasts, open_reference, persistence_forecast, score_system, \
        write_scorecard

    use_config(config)
    if metric not in ("rmse", "mae"):
        raise FuxiopsError(f"--metric must be rmse or mae, got {metric!r}")
    ref = open_reference(reference)
    name, path = _named(forecast)
    systems = {name: open_forecasts(path)}
    for b in baseline:
        bname, bpath = _named(b)
        if bname in systems:
            raise FuxiopsError(f"two systems are named {bname!r}; use NAME=PATH to tell them apart")
        systems[bname] = open_forecasts(bpath)
    if persistence:
        f0 = systems[name]
        inits = f0["time"].values[pd.DatetimeIndex(f0["time"].values).isin(pd.DatetimeIndex(ref["time"].values))]
        systems["persistence"] = persistence_forecast(ref[list(f0.data_vars)], inits, f0["step"].values)
    frames = []
    with console.status("scoring ...") as status:
        for sname, ds in systems.items():
            status.update(f"scoring {sname} ...")
            df = score_system(ds, ref, metric_names=("rmse", "bias", "mae"))
            df["system"] = sname
            frames.append(df)
    scores = pd.concat(frames, ignore_index=True)
    summary = write_scorecard(scores, out, name, [s for s in systems if s != name], metric)
    for c in summary["comparisons"]:  # type: ignore[union-attr]
        console.print(f"{c['system']} beats {c['baseline']} in {c['wins']}/{c['cells']} cells "
                      f"({100 * c['share']:.1f}%) on {metric.upper()}")
    console.print(f"scorecard written to {out}")
