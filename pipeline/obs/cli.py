"""``fuxiops obs``: ingest observation files for a cycle, list readers, show gridded channels.

Only light imports at module level; ecCodes, pandas and Dask load inside commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from fuxiops.cli.common import config_option, console, err_console, use_config
from fuxiops.errors import FuxiopsError

app = typer.Typer(help="Observation ingest and quality control: BUFR/CSV -> observation table -> QC -> "
                       "gridded assimilator channels.", no_args_is_help=True)


def _parse_cycle(value: str) -> "object":
    import pandas as pd

    v = value.strip().rstrip("Z")
    try:
        # Run ids (YYYYMMDDHH) are accepted as well as ISO times.
        t = pd.Timestamp(f"{v[:4]}-{v[4:6]}-{v[6:8]}T{v[8:10]}") if v.isdigit() and len(v) == 10 else pd.Timestamp(v)
    except Exception:
        raise FuxiopsError(f"--cycle {value!r} is not a time; use e.g. 2018-11-02T00 or 2018110200") from None
    if t.tzinfo is not None:
        t = t.tz_convert("UTC").tz_localize(None)
    return t


@app.command()
def ingest(
    files: List[Path] = typer.Argument(..., help="Observation files (BUFR editions 3/4, CSV, Parquet)."),
    cycle: str = typer.Option(..., "--cycle", help="Cycle (analysis) time, UTC, e.g. 2018-11-02T00."),
    out: Path = typer.Option(..., "--out", help="Output folder: observations.parquet, qc_report.json/.md, "
                                                "gridded.nc."),
    background: Optional[Path] = typer.Option(None, "--background",
                                              help="Background state (Zarr/NetCDF) for the O-B check."),
    reader: Optional[str] = typer.Option(None, "--reader", help="Force one reader for all files (default: by "
                                                                 "file name, then by content)."),
    mode: str = typer.Option("auto", "--mode", help="auto | serial | dask (Dask: LocalCluster, or the scheduler "
                                                    "in $DASK_SCHEDULER_ADDRESS)."),
    grid: bool = typer.Option(True, "--grid/--no-grid", help="Write the gridded assimilator channels (gridded.nc)."),
    config: Optional[Path] = config_option(),
) -> None:
    """Decode, quality-control and grid one cycle's observations.

    Bad files and messages are quarantined (reasons in qc_report.json); the
    command exits 0 with a warning summary unless every input failed (exit 2).
    Input files are never modified.
    """
    from rich.progress import Progress

    from fuxiops.pipeline.obs.flags import REJECT_MASK, QCFlag
    from fuxiops.pipeline.obs.ingest import ingest as run_ingest, open_background

    cfg = use_config(config)
    if mode not in ("auto", "serial", "dask"):
        raise FuxiopsError(f"--mode {mode!r}: allowed auto, serial, dask")
    if reader is not None:
        from fuxiops.pipeline.obs.readers import READERS

        READERS.get(reader)
    t = _parse_cycle(cycle)
    bg = open_background(background) if background is not None else None
    with Progress(console=err_console, transient=True) as prog:
        task = prog.add_task("decoding", total=None)
        res = run_ingest([str(f) for f in files], cycle_time=t, config=cfg, out_dir=out, background=bg,
                         reader=reader, mode=mode, grid_output=grid,  # type: ignore[arg-type]
                         progress=lambda d, n: prog.update(task, completed=d, total=n))
    rep = res.report
    tab = Table(title=f"observations, cycle {rep['cycle']}")
    for c in ("report type", "rows", "used", "rejected", "main reasons"):
        tab.add_column(c, justify="right" if c in ("rows", "used", "rejected") else "left")
    for k, v in rep["by_report_type"].items():
        top = sorted(((n, c) for n, c in v["by_reason"].items() if QCFlag[n] & REJECT_MASK),
                     key=lambda kv: -kv[1])[:3]
        tab.add_row(k, str(v["rows"]), str(v["used"]), str(v["rejected"]), ", ".join(f"{n} {c}" for n, c in top))
    tot = rep["totals"]
    tab.add_row("[bold]total", str(tot["rows"]), str(tot["used"]), str(tot["rejected"]), "")
    console.print(tab)
    for name, p in res.outputs.items():
        console.print(f"  {name:<14} {p}")
    if rep["quarantined"]:
        err_console.print(f"[yellow]warning:[/yellow] {len(rep['quarantined'])} file(s)/message(s) quarantined:")
        for q in rep["quarantined"][:10]:
            where = f" message {q['message_index']}" if q.get("message_index") is not None else ""
            err_console.print(f"  {Path(q['source_file']).name}{where}: {q['reason']}", markup=False)
        if len(rep["quarantined"]) > 10:
            err_console.print(f"  ... {len(rep['quarantined']) - 10} more in qc_report.json", markup=False)
    if res.all_failed or not files:
        err_console.print("[bold red]error:[/bold red] every input failed; nothing was ingested")
        raise typer.Exit(2)


@app.command()
def readers(config: Optional[Path] = config_option()) -> None:
    """List the registered observation readers and the configured observation streams."""
    from fuxiops.pipeline.obs.readers import READERS

    cfg = use_config(config)
    console.print("[bold]readers:[/bold] " + ", ".join(READERS.names()))
    for src in cfg.observations.sources:
        console.print(f"  stream {src.name:<10} reader {src.reader:<10} files {src.pattern}")


@app.command()
def channels(config: Optional[Path] = config_option()) -> None:
    """Show the gridded channels per observation group (the assimilator's encoder inputs)."""
    from fuxiops.pipeline.obs.gridding import gridded_channels

    cfg = use_config(config)
    for g, names in gridded_channels(cfg.variable_set, cfg.grid_spec, cfg).items():
        console.print(f"[bold]{g}[/bold] ({len(names)}): {', '.join(names)}")
