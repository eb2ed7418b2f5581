"""Entry point of the ``fuxiops`` CLI: global options, ``info``, and the subcommand groups.

Each layer defines its own Typer group in a light module (heavy imports happen
inside commands), so ``fuxiops --help`` and ``fuxiops info`` never import torch.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import platform
import sys
from pathlib import Path

import typer

from fuxiops import __version__
from fuxiops.cli.common import STATE, config_option, console, err_console, use_config
from fuxiops.config import dump_config
from fuxiops.errors import FuxiopsError
from fuxiops.logs import setup_logging

app = typer.Typer(
    name="fuxiops",
    help="fuxiops: an operational AI weather service. Ingests observations, runs a FuXiWeather2-style "
    "analysis on its own background, issues 10-day forecasts, publishes GRIB2/NetCDF/Zarr and serves them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

#: Subcommand groups: (name, "module:attribute"). Each module imports only light things at top level.
GROUPS: list[tuple[str, str]] = [
    ("world", "fuxiops.pipeline.world.cli:app"),
    ("compress", "fuxiops.compression.cli:app"),
    ("model", "fuxiops.models.cli:model_app"),
    ("obs", "fuxiops.pipeline.obs.cli:app"),
    ("forecast", "fuxiops.models.cli:forecast_app"),
    ("publish", "fuxiops.pipeline.products.cli:app"),
    ("stack", "fuxiops.pipeline.stack.cli:app"),
    ("cycle", "fuxiops.pipeline.cycle.cli:app"),
    ("demo", "fuxiops.pipeline.cycle.demo:app"),
    ("serve", "fuxiops.services.cli:app"),
    ("train", "fuxiops.models.training.cli:app"),
]


_registered = False


def _register_groups() -> None:
    """Attach the layer groups (once); their modules import only light things."""
    global _registered
    if _registered:
        return
    _registered = True
    from fuxiops.cli.evaluate import evaluate

    app.command("evaluate")(evaluate)
    for name, target in GROUPS:
        module, _, attr = target.partition(":")
        group = getattr(importlib.import_module(module), attr)
        app.add_typer(group, name=name)


@app.callback()
def _global(
    config: Path | None = typer.Option(None, "--config", "-c", envvar="FUXIOPS_CONFIG",
                                       help="Deployment YAML file (default: the testbed deployment).",
                                       show_default=False),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    log_level: str = typer.Option("INFO", "--log-level", help="DEBUG, INFO, WARNING or ERROR."),
) -> None:
    # Each invocation loads its configuration afresh (the environment may have changed since the last).
    STATE.config_path = config
    STATE._config = None
    STATE.debug = debug
    setup_logging(log_level.upper())


_PACKAGES = ["numpy", "xarray", "zarr", "eccodes", "eccodeslib", "pydantic", "fastapi", "torch", "onnxruntime",
             "onnxruntime-gpu", "jax", "dinosaur", "prefect", "dask", "sqlalchemy"]


@app.command()
def info(config: Path | None = config_option(),
         show_config: bool = typer.Option(True, "--show-config/--no-show-config",
                                          help="Print the effective configuration.")) -> None:
    """Print versions, the active configuration and where data lives."""
    cfg = use_config(config)
    console.print(f"[bold]fuxiops[/bold] {__version__}  (Python {platform.python_version()}, {platform.platform()})")
    for pkg in _PACKAGES:
        try:
            console.print(f"  {pkg:<16} {md.version(pkg)}")
        except md.PackageNotFoundError:
            console.print(f"  {pkg:<16} [dim]not installed[/dim]")
    console.print(f"config file: {STATE.config_path or '(defaults: testbed deployment)'}")
    console.print(f"home:        {cfg.home}")
    for loc in ("world", "observations", "state", "runs", "products"):
        console.print(f"  {loc:<13}{cfg.location(loc)}")
    console.print(f"  catalog      {cfg.catalog_url}")
    vs = cfg.variable_set
    console.print(f"grid:        {cfg.grid} {cfg.grid_spec.shape}")
    console.print(f"variables:   {len(vs.state_channels)} state channels + {len(vs.diagnostic_channels)} diagnostic")
    if show_config:
        console.print("[bold]effective configuration[/bold]")
        console.print(dump_config(cfg), markup=False, highlight=False)


def main() -> None:
    """Run the CLI; input and configuration errors exit 2 without a traceback (unless --debug)."""
    try:
        _register_groups()
        app()
    except FuxiopsError as e:
        if STATE.debug or "--debug" in sys.argv:
            raise
        err_console.print(f"[bold red]error:[/bold red] {e}", markup=True, highlight=False)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
