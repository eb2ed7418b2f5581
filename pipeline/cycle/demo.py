"""``fuxiops demo``: from a fresh install to a served 10-day forecast in one command.

Builds (or reuses) the testbed world, delivers its observations, cold-starts,
runs a few cycles on their own backgrounds (the last one issues the 10-day
forecast), then starts the API and prints the URLs to open. ``--no-serve``
stops after the cycles, for scripts.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import typer

from fuxiops.cli.common import STATE, config_option, console, use_config

app = typer.Typer(help="Build the testbed world, cold-start, run a few cycles, serve the forecast.",
                  invoke_without_command=True)


@app.callback()
def demo(cycles: int = typer.Option(4, "--cycles", "-n", min=1, max=40,
                                    help="Cycles to run (the first is a cold start; the last issues the 10-day "
                                         "forecast)."),
         serve: bool = typer.Option(True, "--serve/--no-serve", help="Start the API afterwards (--no-serve: exit, "
                                    "for scripts)."),
         config: Path | None = config_option()) -> None:
    """Run the whole system on the testbed world and serve the result."""
    cfg = use_config(config)
    t_start = time.monotonic()
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from fuxiops.errors import FuxiopsError
    from fuxiops.pipeline.cycle import testbed
    from fuxiops.pipeline.cycle.times import iso, parse_cycle_time, run_id

    console.print(f"[bold]fuxiops demo[/bold]  home: {cfg.home}  grid: {cfg.grid}")
    # 1. The world (truth, reanalysis, observations).
    if testbed.world_ready(cfg):
        console.print(f"[1/4] testbed world found at {testbed.world_root(cfg)}")
    else:
        console.print(f"[1/4] building the testbed world ({cfg.world.days:g} days, seed {cfg.world.seed}) ...")
        with Progress(TextColumn("  {task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} d"),
                      TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("world", total=None)

            def progress(done: int, total: int, message: str) -> None:
                bar.update(task, completed=done, total=total, description=message[:50])
                if not console.is_terminal:  # logs and scripts: one line per step instead of a bar
                    console.print(f"  world: {done}/{total} days ({message}) "
                                  f"{time.monotonic() - t_start:.0f} s")

            testbed.ensure_world(cfg, progress)
    # 2. Cycle times: the first needs the reanalysis one step earlier for its cold start.
    step = timedelta(hours=cfg.schedule.step_hours)
    start = parse_cycle_time(cfg.world.start.replace("Z", ""), cfg.schedule.step_hours) + step
    times = [start + k * step for k in range(cycles)]
    world_end = start - step + timedelta(days=float(cfg.world.days))
    if times[-1] > world_end:
        raise FuxiopsError(f"{cycles} cycles from {iso(start)} need a world of more than {cfg.world.days:g} days; "
                           f"lower --cycles or raise world.days")
    delivered = {run_id(t): testbed.deliver_observations(cfg, t) for t in times}
    console.print(f"[2/4] observations delivered for {len(times)} cycles "
                  f"({sum(delivered.values())} files): {', '.join(f'{k}: {v}' for k, v in delivered.items())}")
    # 3. The cycles (Prefect flows; a published cycle is skipped, so a second demo is quick).
    console.print(f"[3/4] running cycles {run_id(times[0])} .. {run_id(times[-1])} "
                  f"({cfg.schedule.forecast_steps} x {cfg.schedule.step_hours} h forecasts) ...")
    from fuxiops.pipeline.cycle.cli import _summary_table, prefect_defaults

    prefect_defaults()
    from fuxiops.pipeline.cycle.flows import cycle

    config_path = str(STATE.config_path) if STATE.config_path else None
    rows = []
    for k, t in enumerate(times, start=1):
        t0 = time.monotonic()
        out = cycle(time=iso(t), config_path=config_path)
        rows.append(out)
        console.print(f"  cycle {k}/{len(times)} {out['run_id']}: {out['status']}"
                      f"{' (cold start)' if out.get('cold_start') else ''}"
                      f"{' (already published)' if out.get('skipped') else ''} in {time.monotonic() - t0:.1f} s")
    console.print(_summary_table(rows))
    last = rows[-1]
    console.print(f"10-day forecast of {last['run_id']}: {last.get('products_path')}")
    console.print(f"demo cycles done in {time.monotonic() - t_start:.0f} s")
    if not serve:
        return
    # 4. The API.
    _serve(cfg, config_path)


def _serve(cfg, config_path: str | None) -> None:  # type: ignore[no-untyped-def]
    """Start the API the way ``fuxiops serve`` does (uvicorn on the services' app factory)."""
    import os

    import uvicorn

    if config_path:
        os.environ["FUXIOPS_CONFIG"] = config_path  # the app factory reads the deployment from here
    host, port = cfg.api.host, cfg.api.port
    base = f"http://{host}:{port}"
    console.print("[4/4] serving the API (as `fuxiops serve`); open:")
    for path, what in (("/", "forecaster page"), ("/docs", "API reference (OpenAPI)"),
                       ("/v1/forecast?latitude=48.1&longitude=11.6&hourly=temperature_2m,wind_speed_10m",
                        "point forecast (Open-Meteo style)"),
                       ("/edr/collections", "OGC API - EDR collections"), ("/runs", "runs catalog"),
                       ("/health", "health")):
        console.print(f"  {base}{path}    [dim]{what}[/dim]")
    console.print("press Ctrl+C to stop")
    uvicorn.run("fuxiops.services.api:app_factory", factory=True, host=host, port=port, workers=cfg.api.workers,
                log_level="warning")
