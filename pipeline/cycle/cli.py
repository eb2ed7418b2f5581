"""``fuxiops cycle``: run, backfill and cold-start cycles, show the run catalog, serve the schedule.

Light at import (typer, rich, core): Prefect, torch and the flows load inside commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from fuxiops.cli.common import STATE, config_option, console, use_config

app = typer.Typer(help="The operational cycle: run, backfill, cold-start, status, serve the 6-hourly schedule.",
                  no_args_is_help=True)


def prefect_defaults() -> None:
    """Settings for the temporary local Prefect server the commands start without PREFECT_API_URL.

    Its default 20-second startup timeout is too short on a busy 2-core machine;
    telemetry cannot leave air-gapped hosts anyway. Explicit settings win.
    """
    import os

    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _config_arg() -> str | None:
    return str(STATE.config_path) if STATE.config_path else None


def _summary_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="cycles")
    for col in ("run", "status", "cold start", "degraded", "time (s)", "products"):
        t.add_column(col)
    for r in rows:
        status = r["status"] + (" (already done)" if r.get("skipped") else "")
        t.add_row(r["run_id"], status, "yes" if r.get("cold_start") else "",
                  "; ".join(r.get("degraded_reasons") or []), f"{sum((r.get('timings') or {}).values()):.1f}",
                  str(r.get("products_path") or ""))
    return t


@app.command("run")
def run(time: str = typer.Option(None, "--time", "-t", help="Cycle time (UTC), e.g. 2023-01-01T06 or 2023010106. "
                                 "Default: the newest cycle whose data cutoff has passed.", show_default=False),
        force: bool = typer.Option(False, "--force", help="Re-run even if the cycle is already published."),
        cold_start: str = typer.Option(None, "--cold-start", help="Ignore the own background and start from this "
                                       "source: reanalysis, file or climatology.", show_default=False),
        config: Path | None = config_option()) -> None:
    """Run one cycle: ingest + QC, background, analysis, forecast, publish, verify, catalog."""
    cfg = use_config(config)
    from fuxiops.pipeline.cycle.times import parse_cycle_time

    if time:  # bad input fails here, before Prefect starts
        parse_cycle_time(time, cfg.schedule.step_hours)
    prefect_defaults()
    from fuxiops.pipeline.cycle.flows import cycle

    if cold_start:
        from fuxiops.pipeline.cycle.components import check_cold_start_source
        check_cold_start_source(cold_start)
    console.print(f"running cycle {time or '(latest due)'} ...")
    out = cycle(time=time, force=force, config_path=_config_arg(), cold_start_source=cold_start)
    console.print(_summary_table([out]))


@app.command("backfill")
def backfill(start: str = typer.Option(..., "--start", help="First cycle (UTC)."),
             end: str = typer.Option(..., "--end", help="Last cycle (UTC), inclusive."),
             force: bool = typer.Option(False, "--force", help="Re-run published cycles too."),
             config: Path | None = config_option()) -> None:
    """Run every cycle from START to END in order; published ones are skipped unless --force."""
    cfg = use_config(config)
    from fuxiops.pipeline.cycle.times import cycles_between, parse_cycle_time

    n = len(cycles_between(parse_cycle_time(start, cfg.schedule.step_hours),
                           parse_cycle_time(end, cfg.schedule.step_hours), cfg.schedule.step_hours))
    console.print(f"backfilling {n} cycle(s) from {start} to {end} ...")
    prefect_defaults()
    from fuxiops.pipeline.cycle.flows import backfill as backfill_flow

    out = backfill_flow(start=start, end=end, force=force, config_path=_config_arg())
    console.print(_summary_table(out))


@app.command("cold-start")
def cold_start(time: str = typer.Option(..., "--time", "-t", help="Cycle time (UTC)."),
               source: str = typer.Option(None, "--source", help="reanalysis, file or climatology "
                                          "(default: cold_start.source of the configuration).", show_default=False),
               config: Path | None = config_option()) -> None:
    """Start a new cycle chain at TIME from a cold-start source (re-runs the cycle, marked cold start)."""
    cfg = use_config(config)
    from fuxiops.pipeline.cycle.components import check_cold_start_source
    from fuxiops.pipeline.cycle.times import parse_cycle_time

    parse_cycle_time(time, cfg.schedule.step_hours)
    if source:
        check_cold_start_source(source)
    prefect_defaults()
    from fuxiops.pipeline.cycle.flows import cold_start as cold_start_flow

    out = cold_start_flow(time=time, source=source, config_path=_config_arg())
    console.print(_summary_table([out]))


@app.command("status")
def status(limit: int = typer.Option(20, "--limit", "-n", min=1, help="Newest runs to show."),
           run_id: str = typer.Option(None, "--run", help="Show one run in full (JSON).", show_default=False),
           as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
           config: Path | None = config_option()) -> None:
    """The run catalog: status, cold start, degraded reasons, observation counts and step timings."""
    cfg = use_config(config)
    from fuxiops.errors import FuxiopsError
    from fuxiops.pipeline.cycle.runs import RunCatalog

    with RunCatalog(cfg.catalog_url) as cat:
        if run_id:
            rec = cat.get(run_id)
            if rec is None:
                raise FuxiopsError(f"no run {run_id!r} in the catalog at {cat.safe_url}")
            console.print_json(json.dumps(rec.to_dict(), default=str))
            return
        runs = cat.list(limit=limit)
    if as_json:
        console.print_json(json.dumps([r.to_dict() for r in runs], default=str))
        return
    t = Table(title=f"runs ({cfg.catalog_url.split('://')[0]} catalog)")
    for col in ("run", "status", "attempts", "cold start", "model", "obs used/read", "degraded / error",
                "total (s)", "slowest step"):
        t.add_column(col, no_wrap=col in ("run", "status"))
    colours = {"published": "green", "degraded": "yellow", "failed": "red", "running": "cyan", "queued": "dim"}
    for r in runs:
        total = (r.obs_counts or {}).get("total", {})
        f = (r.model or {}).get("forecaster", {})
        model = f"{f.get('preset', '')} {str(f.get('weights_sha256', ''))[:8]}".strip()
        if f.get("untrained"):
            model += " [untrained]"
        slow = max(r.timings.items(), key=lambda kv: kv[1]) if r.timings else None
        note = "; ".join(r.degraded_reasons) if r.degraded_reasons else (r.error or "").splitlines()[0:1]
        t.add_row(r.run_id, f"[{colours.get(r.status, 'white')}]{r.status}[/]", str(r.attempts),
                  r.cold_start_source or ("yes" if r.cold_start else ""), model,
                  f"{total.get('used', '')}/{total.get('read', '')}" if total else "",
                  _short(note if isinstance(note, str) else " ".join(note)),
                  f"{sum(r.timings.values()):.1f}" if r.timings else "",
                  f"{slow[0]} {slow[1]:.1f}" if slow else "")
    console.print(t)
    if not runs:
        console.print("[dim]no runs yet: try `fuxiops cycle run --time 2023-01-01T06` or `fuxiops demo`[/dim]")


def _short(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


@app.command("serve")
def serve(config: Path | None = config_option()) -> None:
    """Serve the deployments (6-hourly cycle schedule with the data cutoff, backfill, cold start) from this
    process: a Prefect runner that needs a Prefect server (PREFECT_API_URL)."""
    cfg = use_config(config)
    from fuxiops.pipeline.cycle.deployments import serve_deployments

    serve_deployments(cfg, _config_arg())
