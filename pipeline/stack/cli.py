"""``fuxiops stack``: start, stop and inspect the native single-machine stack, and check a service's settings."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fuxiops.cli.common import STATE, config_option, console, use_config

app = typer.Typer(help="The native stack on one machine (127.0.0.1): PostgreSQL, Prefect server + process worker, "
                       "the API, a Dask scheduler + workers. Settings: FUXIOPS_STACK_* (see .env.example).",
                  no_args_is_help=True)

_SERVICES_HELP = ("Services to act on (default: all): postgres, prefect-server, dask-scheduler, dask-worker, "
                  "prefect-worker, api.")


def _stack(config: Path | None):  # -> Stack; typed loosely to keep this module's imports light
    from fuxiops.pipeline.stack.stack import Stack

    cfg = use_config(config)
    return Stack(cfg, config_path=STATE.config_path, echo=lambda m: console.print(m, markup=False, highlight=False))


@app.command()
def up(services: list[str] = typer.Argument(None, help=_SERVICES_HELP, show_default=False),
       config: Path | None = config_option(),
       json_out: bool = typer.Option(False, "--json", help="Print the stack's addresses as JSON.")) -> None:
    """Start the stack (or the named services), each waited for until it answers; already running ones are kept."""
    from fuxiops.pipeline.stack.settings import SERVICES

    stack = _stack(config)
    with console.status("starting the stack..."):
        summary = stack.up(services or list(SERVICES))
    _print(summary, json_out)


@app.command()
def down(services: list[str] = typer.Argument(None, help=_SERVICES_HELP, show_default=False),
         config: Path | None = config_option()) -> None:
    """Stop what `stack up` started (exactly the recorded processes and their process groups)."""
    from fuxiops.pipeline.stack.settings import SERVICES

    _stack(config).down(services or list(SERVICES))


@app.command()
def status(config: Path | None = config_option(),
           json_out: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Show each service: running or not, pid, address and log file (exit code 3 when none runs)."""
    summary = _stack(config).status()
    _print(summary, json_out)
    if not any(s["running"] for s in summary["services"].values()):
        raise typer.Exit(3)


@app.command()
def check(role: str = typer.Argument(..., help="api, worker, prefect-server or dask."),
          config: Path | None = config_option(),
          connect: bool = typer.Option(True, "--connect/--no-connect", help="Also connect to the catalog database.")
          ) -> None:
    """Check one service's settings and exit 2 naming each missing or wrong one (container entrypoints run this)."""
    from fuxiops.pipeline.stack.preflight import preflight

    preflight(use_config(config), role, connect=connect)
    console.print(f"{role}: settings OK")


@app.command()
def register(specs: list[Path] = typer.Argument(None, help="prefect.yaml files (default: deploy/prefect.yaml and "
                                                       "deploy/prefect/*.yaml).", show_default=False)) -> None:
    """Create the process work pool and register the Prefect deployments on $PREFECT_API_URL (idempotent)."""
    import os

    from fuxiops.pipeline.stack.preflight import check_prefect_env
    from fuxiops.pipeline.stack.stack import register_deployments
    from fuxiops.pipeline.stack.stack_paths import deployment_files
    from fuxiops.errors import ConfigError

    problems = check_prefect_env(os.environ, "worker")
    if problems:
        raise ConfigError("cannot register deployments:\n  " + "\n  ".join(problems))
    files = deployment_files([str(p) for p in specs] if specs else None)
    with console.status("registering deployments..."):
        done = register_deployments(dict(os.environ), files)
    for f in done:
        console.print(f"registered {f}")


@app.command()
def recover(pool: str = typer.Option("fuxiops", "--pool", help="Work pool whose orphaned runs to reschedule.")) -> None:
    """Reschedule flow runs left Running by a stopped worker of this host (run before the pool's only worker starts)."""
    import os

    from fuxiops.errors import ConfigError
    from fuxiops.pipeline.stack.preflight import check_prefect_env
    from fuxiops.pipeline.stack.stack import recover_orphans

    problems = check_prefect_env(os.environ, "worker")
    if problems:
        raise ConfigError("cannot recover flow runs:\n  " + "\n  ".join(problems))
    done = recover_orphans(os.environ["PREFECT_API_URL"], pool, echo=lambda m: console.print(m, markup=False))
    console.print(f"{len(done)} flow run(s) rescheduled")


@app.command("env-example")
def env_example_cmd() -> None:
    """Print .env.example: every FUXIOPS_* setting (with its default and meaning) and the compose/stack ones."""
    import sys

    from fuxiops.pipeline.stack.envdoc import env_example

    sys.stdout.write(env_example())


def _print(summary: dict, json_out: bool) -> None:
    if json_out:
        console.print_json(json.dumps(summary))
        return
    from rich.table import Table

    table = Table(title=f"fuxiops stack ({summary['root']})")
    for col in ("service", "state", "pid", "address", "log"):
        table.add_column(col)
    for name, s in summary["services"].items():
        table.add_row(name, "[green]running[/green]" if s["running"] else "[dim]stopped[/dim]",
                      str(s["pid"] or ""), s["address"], s["log"])
    console.print(table)
    console.print(f"Prefect API: {summary['prefect_api_url']}   API: {summary['api_url']}   "
                  f"secrets: {summary['secrets']}")
