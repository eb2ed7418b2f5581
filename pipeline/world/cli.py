"""``fuxiops world``: build, describe and inspect the testbed world; spin-up and geometry tools.

Light at import (typer, rich, core): JAX, dinosaur and ecCodes load inside commands.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fuxiops.cli.common import config_option, console, use_config
from fuxiops.errors import DataError

app = typer.Typer(help="The testbed world: a Held-Suarez nature run (truth), an imperfect reanalysis and NWP, "
                  "and raw + simulated observations in BUFR.", no_args_is_help=True)


@app.command("build")
def build(out: Path = typer.Option(None, "--out", "-o", help="World folder (default: the configuration's "
                                   "data.world location).", show_default=False),
          start: str = typer.Option(None, "--start", help="First output time (UTC, 00/06/12/18), "
                                    "e.g. 2023-01-01T00. Default: the configuration's world.start.",
                                    show_default=False),
          days: int = typer.Option(None, "--days", help="Simulated days (1..3660). Default: world.days.",
                                   show_default=False),
          grid: str = typer.Option(None, "--grid", help="Named output grid (default: the configuration's grid, "
                                   "testbed 2.8125deg).", show_default=False),
          seed: int = typer.Option(None, "--seed", help="World seed: picks the weather (default: world.seed).",
                                   show_default=False),
          no_nwp: bool = typer.Option(False, "--no-nwp", help="Skip the NWP forecasts."),
          nwp_every_h: int = typer.Option(12, "--nwp-every-h", help="Hours between NWP initialisations "
                                          "(6, 12 or 24): a year at 12 h is ~43 GB of NWP at 2.8125deg."),
          nwp_max_lead_h: int = typer.Option(240, "--nwp-max-lead-h", help="Longest NWP lead in hours "
                                             "(a multiple of 6, at most 720)."),
          obs: str = typer.Option("synop,temp,amdar,gnssro,mwts", "--obs",
                                  help="Observation types to write, comma separated ('' for none)."),
          obs_workers: int = typer.Option(None, "--obs-workers", min=0, help="Processes writing observations "
                                          "while the models run ahead (0: none; default: one per core, at most 4). "
                                          "The world does not depend on it.", show_default=False),
          config: Path | None = config_option()) -> None:
    """Build a world (resumes an interrupted build in the same folder with the same settings)."""
    import math
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from fuxiops.pipeline.world.build import WorldSpec, build_world, parse_start

    cfg = use_config(config)
    root = out or Path(cfg.location("world"))
    n_days = days if days is not None else max(1, math.ceil(cfg.world.days))
    spec = WorldSpec(start=parse_start(start or cfg.world.start), days=n_days, grid=grid or cfg.grid,
                     seed=cfg.world.seed if seed is None else seed, with_nwp=not no_nwp,
                     nwp_every_h=nwp_every_h, nwp_max_lead_h=nwp_max_lead_h,
                     obs_types=tuple(t.strip() for t in obs.split(",") if t.strip()))
    with Progress(TextColumn("[bold]world[/bold]"), BarColumn(), TextColumn("{task.completed}/{task.total} days"),
                  TextColumn("{task.description}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console) as bar:
        task = bar.add_task("starting", total=spec.days)
        world = build_world(root, spec=spec, obs_workers=obs_workers,
                            progress=lambda done, total, msg: bar.update(task, completed=done, description=msg))
    console.print(f"world ready in {world.root} ({spec.days} days from {spec.start:%Y-%m-%dT%H}Z, "
                  f"grid {spec.grid}, seed {spec.seed})")


@app.command("describe")
def describe(world: Path = typer.Option(None, "--world", "-w", help="World folder (default: data.world).",
                                        show_default=False),
             out: Path = typer.Option(Path("world_zonal_means.png"), "--out", "-o", help="PNG figure to write."),
             store: str = typer.Option("truth", "--store", help="truth, reanalysis or nwp."),
             config: Path | None = config_option()) -> None:
    """Zonal-mean wind/temperature figure and the Held-Suarez jet check of a world."""
    from fuxiops.pipeline.world.build import open_world
    from fuxiops.pipeline.world.describe import describe_figure, jet_check

    cfg = use_config(config)
    w = open_world(world or Path(cfg.location("world")))
    ds = w.open(store)
    if store == "nwp":
        ds = ds.isel(step=0)
    ds = ds.dropna("time", how="all", subset=["u"])
    if ds.sizes.get("time", 0) == 0:
        raise DataError(f"{w.root}: the {store} store has no data yet (build not started?)")
    jc = jet_check(ds)
    describe_figure(ds, out, title=f"{w.root.name} {store} (seed {w.spec.seed})")
    console.print(json.dumps({**jc.__dict__, "problems": jc.problems(), "figure": str(out)}, indent=2))


@app.command("info")
def info(world: Path = typer.Option(None, "--world", "-w", help="World folder (default: data.world).",
                                    show_default=False),
         config: Path | None = config_option()) -> None:
    """Show a world's settings, progress and file counts."""
    from fuxiops.pipeline.world.build import _days_done, open_world

    cfg = use_config(config)
    w = open_world(world or Path(cfg.location("world")))
    console.print_json(json.dumps({"root": str(w.root), "days_done": _days_done(w.root), **w.info,
                                   "obs_files": {k: len(w.obs_files(k)) for k in ("raw", "sim")}}))


@app.command("spinup")
def spinup(work: Path = typer.Option(..., "--work", help="Folder for the resumable spin-up checkpoint."),
           days: int = typer.Option(480, "--days", help="Total days from rest."),
           discard: int = typer.Option(240, "--discard", help="Days discarded before keeping states."),
           every: int = typer.Option(30, "--every", help="Days between kept states."),
           config: Path | None = config_option()) -> None:
    """Spin the truth core up from rest and keep states for the shipped library (about an hour)."""
    use_config(config)
    from fuxiops.pipeline.world.spinup import run_spinup

    if not 0 < discard < days or every <= 0:
        raise DataError("need 0 < --discard < --days and --every > 0")
    run_spinup(work, days, discard, every, log=console.print)


@app.command("extract-geometry")
def extract_geometry(real: Path = typer.Option(..., "--real", help="Folder with perf_synop.bufr, temp.bufr and "
                                               "metop-a_hirs_l1b_20181122.bufr."),
                     config: Path | None = config_option()) -> None:
    """Decode the real BUFR network samples into the shipped geometry npz."""
    use_config(config)
    from fuxiops.pipeline.world.network import extract_geometry as run

    console.print(f"wrote {run(real)}")
