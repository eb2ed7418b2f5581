"""``fuxiops serve``: run the REST API with uvicorn, hash API keys, write a demo run.

Only light imports at module level; uvicorn and the app load inside commands.
"""

from __future__ import annotations

from pathlib import Path

import typer

from fuxiops.cli.common import STATE, config_option, console, use_config
from fuxiops.errors import ConfigError

app = typer.Typer(help="Serve forecasts over HTTP: Open-Meteo-style /v1/forecast, OGC EDR, runs and downloads, "
                       "maps, meteograms and a page for forecasters.", invoke_without_command=True,
                  no_args_is_help=False)


@app.callback()
def serve(ctx: typer.Context, config: Path | None = config_option(),
          host: str | None = typer.Option(None, "--host", help="Bind address (default: api.host)."),
          port: int | None = typer.Option(None, "--port", help="Port (default: api.port)."),
          workers: int | None = typer.Option(None, "--workers", help="Worker processes (default: api.workers)."),
          log_level: str = typer.Option("info", "--uvicorn-log-level", help="uvicorn log level."),
          access_log: bool = typer.Option(False, "--access-log/--no-access-log",
                                          help="Log every request (costly under load).")) -> None:
    """Start the API (uvicorn) with the configured host, port and workers; Ctrl-C stops it."""
    if ctx.invoked_subcommand is not None:
        return
    import os

    import uvicorn

    cfg = use_config(config)
    if STATE.config_path is not None:
        # The app (and every worker process) is built from the environment: hand it the same file,
        # whether it came with `fuxiops --config X serve` or `fuxiops serve --config X`.
        os.environ["FUXIOPS_CONFIG"] = str(STATE.config_path)
    h, p, w = host or cfg.api.host, port or cfg.api.port, workers or cfg.api.workers
    if not 1 <= p <= 65535:
        raise ConfigError(f"--port must be 1..65535, got {p}")
    console.print(f"serving {cfg.location('products')} on http://{h}:{p} ({w} worker(s)); docs at /docs")
    uvicorn.run("fuxiops.services.api:app_factory", factory=True, host=h, port=p, workers=w, log_level=log_level,
                access_log=access_log, proxy_headers=False)


@app.command("hash-key")
def hash_key_cmd(key: str = typer.Argument(..., help="The API key to hash (keep the key itself secret).")) -> None:
    """Print the SHA-256 digest to put in api.admin_key_sha256 or api.read_key_sha256."""
    from fuxiops.services.api.security import hash_key

    console.print(hash_key(key), markup=False, highlight=False)


@app.command("demo-run")
def demo_run(config: Path | None = config_option(),
             run_id: str = typer.Option("2023010100", "--run", help="Run id YYYYMMDDHH."),
             grid: str = typer.Option("5.625deg", "--grid", help="Named grid."),
             steps: int = typer.Option(41, "--steps", min=1, max=401, help="Lead times (6-hourly).")) -> None:
    """Publish a synthetic run into the products folder (to try the API without a cycle)."""
    import re

    from fuxiops.services.api.synthetic import write_run

    if not re.match(r"^\d{10}$", run_id):
        raise ConfigError(f"--run must be YYYYMMDDHH, got {run_id!r}")
    cfg = use_config(config)
    path = write_run(cfg.location("products"), run_id=run_id, grid=grid, steps=steps,
                     status="published", progress=True)
    console.print(f"wrote {path}")
