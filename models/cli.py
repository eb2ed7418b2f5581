"""CLI of the networks: ``fuxiops model summary|inspect|init`` and ``fuxiops forecast``.

Light at import time (typer, rich, fuxiops core); torch is imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from fuxiops.cli.common import config_option, console, use_config
from fuxiops.errors import FuxiopsError

model_app = typer.Typer(help="FuXiWeather2 networks: sizes of presets, checkpoint inspection, new checkpoints.",
                        no_args_is_help=True)
forecast_app = typer.Typer(help="Run the forecaster from two consecutive states in a Zarr store.",
                           invoke_without_command=True)


@model_app.command("summary")
def summary(preset: str = typer.Option("small", "--preset", "-p", help="tiny, small, base or paper."),
            grid: str = typer.Option("", "--grid", "-g", help="Grid name (default: the deployment's)."),
            variables: str = typer.Option("", "--variables",
                                          help="Variable set: production or testbed (default: the deployment's)."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
            config: Path | None = config_option()) -> None:
    """Parameters, FLOPs per step and activation memory per step of the forecaster and assimilator.

    Networks are built on the meta device, so even the paper preset costs no memory.
    """
    from fuxiops.catalog import VARIABLE_SETS
    from fuxiops.grids import get_grid
    from fuxiops.models.presets import get_preset
    from fuxiops.models.summary import human, summarise_assimilator, summarise_forecaster

    cfg = use_config(config)
    g = get_grid(grid or cfg.grid)
    if variables and variables not in VARIABLE_SETS:
        raise FuxiopsError(f"unknown variable set {variables!r}; allowed: {', '.join(VARIABLE_SETS)}")
    vs = VARIABLE_SETS[variables] if variables else cfg.variable_set
    p = get_preset(preset)
    with console.status(f"tracing {preset} on {g.name} (meta device)..."):
        rows = [summarise_forecaster(p.forecaster, vs, g, preset), summarise_assimilator(p.assimilator, vs, g,
                                                                                         preset=preset)]
    if as_json:
        console.print_json(json.dumps([r.to_dict() for r in rows]))
        return
    t = Table(title=f"preset {preset} on grid {g.name} {g.shape}, {len(vs.state_channels)} state channels")
    for col in ("network", "parameters", "weights", "FLOPs / step", "activations peak", "activations total",
                "shape"):
        t.add_column(col)
    for r in rows:
        t.add_row(r.network, human(r.parameters), human(r.weights_bytes, "B"), human(r.flops_per_step, "FLOP"),
                  human(r.activation_peak_bytes, "B"), human(r.activation_total_bytes, "B"), r.tokens)
    console.print(t)
    console.print("FLOPs: multiply-add = 2. Activations: peak = most bytes alive at once in an inference step; "
                  "total = all intermediate results (upper bound of what training keeps).")


@model_app.command("inspect")
def inspect(checkpoint: Path = typer.Argument(..., help="Checkpoint directory."),
            verify: bool = typer.Option(True, "--verify/--no-verify", help="Check the weights' sha256."),
            config: Path | None = config_option()) -> None:
    """Print a checkpoint's metadata (kind, preset, variables, grid, provenance) and verify its weights."""
    from fuxiops.models.checkpoint import WEIGHTS, read_metadata, sha256_file

    use_config(config)
    meta = read_metadata(checkpoint)
    console.print(f"[bold]{meta.kind}[/bold] preset {meta.preset} runtime {meta.runtime} "
                  f"(fuxiops {meta.package_version}, created {meta.created})")
    c = meta.coords
    console.print(f"grid {c.grid.name} {c.grid.shape}; step {c.step_hours} h; inputs at {list(c.input_offsets_hours)} h")
    console.print(f"variables {c.variables.to_dict()}")
    if meta.obs_channels:
        console.print(f"observation groups {meta.obs_channels}")
    console.print(f"static fields: {meta.static_source}")
    console.print(f"training: {json.dumps(meta.training)}", markup=False, highlight=False)
    if verify:
        ok = sha256_file(checkpoint / WEIGHTS) == meta.weights_sha256
        console.print(f"weights sha256 {meta.weights_sha256[:16]}... {'[green]ok[/green]' if ok else '[red]MISMATCH[/red]'}")
        if not ok:
            raise FuxiopsError(f"{checkpoint}: weights do not match their recorded sha256")


@model_app.command("init")
def init(out: Path = typer.Argument(..., help="Checkpoint directory to create."),
         kind: str = typer.Option("forecaster", "--kind", help="forecaster or assimilator."),
         preset: str = typer.Option("small", "--preset", "-p", help="tiny, small, base or paper."),
         stats_from: Path | None = typer.Option(None, "--stats-from",
                                                help="Zarr state store to compute normalisation from "
                                                     "(default: identity normalisation)."),
         obs: str = typer.Option("", "--obs", help="Assimilator observation groups, e.g. synop=8,temp=16."),
         seed: int = typer.Option(0, "--seed", help="Random seed of the initial weights."),
         grid: str = typer.Option("", "--grid", "-g", help="Grid name (default: the deployment's)."),
         config: Path | None = config_option()) -> None:
    """Create an untrained checkpoint for the deployment's grid and variables (training starts from it)."""
    from fuxiops.grids import get_grid
    from fuxiops.models.inference import open_store
    from fuxiops.models.normalisation import NormStats, compute_stats

    cfg = use_config(config)
    vs, g = cfg.variable_set, (get_grid(grid) if grid else cfg.grid_spec)
    if stats_from is not None:
        with console.status(f"computing normalisation from {stats_from}..."):
            ds = open_store(stats_from)
            norm = compute_stats((ds.isel(time=slice(i, i + 32)) for i in range(0, ds.sizes["time"], 32)),
                                 vs, g, cfg.schedule.step_hours)
    else:
        norm = NormStats.identity(vs)
    training = {"stage": "untrained", "seed": seed, "normalisation_source": str(stats_from or "identity")}
    if kind == "forecaster":
        from fuxiops.models.torch_forecaster import TorchForecaster
        TorchForecaster.build(preset, vs, g, norm, seed=seed, step_hours=cfg.schedule.step_hours).save(out, training)
    elif kind == "assimilator":
        from fuxiops.models.torch_assimilator import TorchAssimilator
        groups = _parse_groups(obs)
        TorchAssimilator.build(preset, vs, g, groups, norm, seed=seed).save(out, training)
    else:
        raise FuxiopsError(f"unknown network kind {kind!r}; allowed: forecaster, assimilator")
    console.print(f"wrote {kind} checkpoint {out}")


def _parse_groups(spec: str) -> dict[str, int]:
    if not spec:
        raise FuxiopsError("an assimilator needs observation groups, e.g. --obs synop=8,temp=16")
    out: dict[str, int] = {}
    for part in spec.split(","):
        name, _, n = part.partition("=")
        if not name or not n.isdigit():
            raise FuxiopsError(f"bad observation group {part!r}; expected NAME=CHANNELS")
        out[name.strip()] = int(n)
    return out


@forecast_app.callback()
def forecast(ctx: typer.Context,
             init: Path = typer.Option(..., "--init", help="Zarr store with the initial states "
                                       "(dims time, level, latitude, longitude), e.g. the testbed reanalysis."),
             time: str = typer.Option("", "--time", "-t", help="Reference time T (ISO, UTC); the states at T-6h "
                                      "and T are used. Default: the last time in the store."),
             steps: int = typer.Option(40, "--steps", "-n", min=0, help="Number of 6-hour steps."),
             out: Path = typer.Option(..., "--out", "-o", help="Output Zarr forecast store."),
             checkpoint: str = typer.Option("", "--checkpoint",
                                            help="Checkpoint directory or .onnx file (default: the deployment's "
                                                 "models.forecaster, i.e. the shipped one for the grid)."),
             device: str = typer.Option("", "--device", help="cpu, cuda or auto (default: the deployment's)."),
             overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output store."),
             config: Path | None = config_option()) -> None:
    """Forecast STEPS leads from the states at T-6h and T in INIT and stream them to OUT (appended along step)."""
    if ctx.invoked_subcommand is not None:  # pragma: no cover - no subcommands
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from fuxiops.grids import grid_from_coords
    from fuxiops.models.base import load_forecaster
    from fuxiops.models.inference import open_store, run_forecast

    cfg = use_config(config)
    if not init.exists():
        raise FuxiopsError(f"initial-state store {init} does not exist")
    try:
        probe = open_store(init)
    except Exception as e:
        raise FuxiopsError(f"cannot open {init} as a Zarr store: {e}") from None
    grid = grid_from_coords(probe["latitude"].values, probe["longitude"].values, f"store {init}")
    fc = load_forecaster(checkpoint or cfg.models.forecaster, device=device or cfg.models.device, grid=grid)
    with Progress(TextColumn("[bold]forecast"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as prog:
        task = prog.add_task("steps", total=steps + 1)
        path = run_forecast(fc, init, out, steps, time or None, overwrite,
                            progress=lambda i, ds: prog.update(task, completed=i + 1))
    console.print(f"wrote {steps} steps (+ initial state) to {path}")
