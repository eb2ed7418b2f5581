"""``fuxiops publish RUN_DIR --formats grib2,netcdf,zarr``: re-publish an existing run into products.

Light module: only typer/rich and fuxiops core at import; xarray, netCDF4,
zarr and the writers load inside the command.
"""

from __future__ import annotations

from pathlib import Path

from typing import Any

import typer
from typer.core import TyperGroup

from fuxiops.cli.common import config_option, console, use_config

# The plain command class Typer's groups derive from (Typer vendors its own click).
_Command: Any = next(c for c in TyperGroup.__mro__[1:] if c.__name__ == "Command")


class _SingleCommandGroup(TyperGroup):
    """A group without subcommands that parses like a command, so that
    ``fuxiops publish RUN_DIR --formats ...`` takes RUN_DIR as an argument (a group
    would read the first positional as a subcommand name)."""

    allow_interspersed_args = True
    allow_extra_args = False

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return _Command.parse_args(self, ctx, args)  # type: ignore[no-any-return]

    def format_usage(self, ctx: Any, formatter: Any) -> None:
        _Command.format_usage(self, ctx, formatter)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return _Command.collect_usage_pieces(self, ctx)  # type: ignore[no-any-return]


app = typer.Typer(help="Publish a run's products (GRIB2, CF NetCDF, Zarr + manifest) atomically.",
                  cls=_SingleCommandGroup, no_args_is_help=True, invoke_without_command=True,
                  pretty_exceptions_enable=False)


@app.callback(invoke_without_command=True)
def publish_run(
    run_dir: Path = typer.Argument(..., help="Run directory holding forecast.zarr (a published run or a work "
                                   "directory), or the .zarr store itself.", show_default=False),
    formats: str | None = typer.Option(None, "--formats", "-f",
                                       help="Comma-separated formats: grib2, netcdf, zarr "
                                       "(default: outputs.formats of the configuration)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Products root (default: the configured "
                                    "data.products location); the run goes to OUT/RUN_ID."),
    replace: bool = typer.Option(True, "--replace/--no-replace",
                                 help="Atomically replace an existing publication of the run."),
    config: Path | None = config_option(),
) -> None:
    """Re-publish RUN_DIR: stream its forecast.zarr step by step through the chosen writers into
    PRODUCTS/RUN_ID, written aside and renamed into place, with manifest.json (sha256 per file).
    Formats not re-written are carried over from an existing publication of the same run."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from fuxiops.pipeline.products import PublishError, parse_formats, publish
    from fuxiops.pipeline.products.source import iter_steps, open_run

    cfg = use_config(config)
    names = parse_formats(formats) if formats else list(cfg.outputs.formats)
    ds, run = open_run(run_dir)
    root = Path(out) if out is not None else Path(cfg.location("products"))
    previous = root / run.run_id
    if previous.exists() and not replace:
        raise PublishError(f"run {run.run_id} is already published at {previous}; use --replace to replace it")
    with Progress(TextColumn("[bold]publish[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task(f"{run.run_id} -> {', '.join(names)}", total=len(run.steps))
        result = publish(iter_steps(ds, run), run, root, names, cfg, replace=replace,
                         carry_over=previous if previous.is_dir() else None,
                         on_step=lambda _s: progress.advance(task))
    n = len(result.manifest["files"])
    size = sum(f["size"] for f in result.manifest["files"]) / 1e6
    console.print(f"published run {run.run_id}: {n} files/stores, {size:.1f} MB, at {result.path}")
