"""``fuxiops compress``: distil, prune, export to ONNX and evaluate forecasters.

Only light imports at module level: torch, onnx and pymoo are imported inside
the commands so that ``fuxiops --help`` stays fast and torch-free.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from fuxiops.cli.common import config_option, console, use_config
from fuxiops.errors import FuxiopsError

app = typer.Typer(help="Compress the forecaster: entropy-corrected distillation, EMO-PMS pruning, ONNX export "
                  "and evaluation.", no_args_is_help=True)

DATA_HELP = ("Training/calibration states: a state store (Zarr/NetCDF with a time dim), 'world' (the "
             "deployment's testbed world reanalysis), or 'synthetic[:N]' (N synthetic 6-hourly states).")


def resolve_series(data: str | None, cfg: Any, coords: Any, store: str = "reanalysis") -> Any:
    """A :class:`StateSeries` from a ``--data``/``--truth`` value (see ``DATA_HELP``)."""
    from fuxiops.compression.data import load_series, synthetic_series

    spec = data or "world"
    if spec.startswith("synthetic"):
        _, _, n = spec.partition(":")
        try:
            n_times = int(n) if n else 240
        except ValueError:
            raise FuxiopsError(f"--data synthetic:N needs an integer N, got {n!r}") from None
        return synthetic_series(coords.variables, coords.grid, n_times, seed=0, step_hours=coords.step_hours)
    if spec == "world":
        path = Path(cfg.location("world")) / f"{store}.zarr"
        if not path.exists():
            raise FuxiopsError(f"no testbed world {store} store at {path}; build one (`fuxiops world build`) or "
                               "pass --data PATH or --data synthetic:N")
        return load_series(path, coords.variables, coords.grid, step_hours=coords.step_hours)
    return load_series(spec, coords.variables, coords.grid, step_hours=coords.step_hours)


def _print_report(report: dict[str, Any], keys: list[str]) -> None:
    for k in keys:
        if k in report:
            console.print(f"  {k:<28} {report[k]}")


@app.command()
def distill(
    teacher: Path = typer.Option(..., "--teacher", help="Teacher forecaster checkpoint directory."),
    out: Path = typer.Option(..., "--out", help="Where to write the student checkpoint."),
    student_preset: Optional[str] = typer.Option(None, "--student-preset",
                                                 help="Student architecture preset (e.g. tiny, small)."),
    student: Optional[Path] = typer.Option(None, "--student", help="Start from this checkpoint instead "
                                           "(e.g. a pruned teacher)."),
    method: str = typer.Option("dynamic", help="dynamic (entropy-corrected), cwd (channel-wise, no controller), "
                               "mse (output MSE) or none (labels only)."),
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    steps: int = typer.Option(1000, min=1, help="Optimisation steps."),
    batch: int = typer.Option(2, min=1, help="Samples per step."),
    lr: float = typer.Option(1e-3, help="AdamW learning rate."),
    tau: float = typer.Option(1.0, help="Temperature of the spatial softmax."),
    kd_weight: float = typer.Option(1.0, help="lambda, the weight of tau^2 * KL (or of the MSE for 'mse')."),
    mse_weight: float = typer.Option(0.0, help="Extra MSE to the teacher outputs (cwd, dynamic)."),
    state_dir: Optional[Path] = typer.Option(None, help="Resumable training state (default: OUT.train)."),
    seed: int = typer.Option(0),
    config: Optional[Path] = config_option(),
) -> None:
    """Distil TEACHER into a smaller student with entropy-corrected distillation (or a baseline)."""
    cfg = use_config(config)
    from fuxiops.compression.distill import TrainConfig, distill_checkpoint
    from fuxiops.compression.losses import KDConfig
    from fuxiops.models.torch_forecaster import TorchForecaster

    kd = KDConfig(method=method, tau=tau, kd_weight=kd_weight, mse_weight=mse_weight)  # type: ignore[arg-type]
    t = TorchForecaster.load(teacher, device="cpu")
    series = resolve_series(data, cfg, t.coords)
    rep = distill_checkpoint(teacher, out, series, student_preset=student_preset, student_ckpt=student, kd=kd,
                             train=TrainConfig(steps=steps, lr=lr, seed=seed,
                                               checkpoint_every=max(1, min(100, steps // 10))),
                             batch=batch, state_dir=state_dir or out.with_name(out.name + ".train"), teacher=t)
    console.print(f"[green]student written to {out}[/green]")
    _print_report(rep, ["method", "steps", "final_loss", "data"])


@app.command()
def prune(
    teacher: Path = typer.Option(..., "--teacher", help="Teacher forecaster checkpoint directory."),
    flops_budget: float = typer.Option(..., "--flops-budget", help="FLOPs per step: absolute, or a fraction "
                                       "(<= 1) of the teacher's."),
    out: Path = typer.Option(..., "--out", help="Where to write the pruned checkpoint."),
    method: str = typer.Option("emo-pms", help="emo-pms, magnitude, uniform or whole-nsga2."),
    data: Optional[str] = typer.Option(None, help=DATA_HELP + " Default: calibrate on inputs drawn around the "
                                       "normalisation means when no world exists."),
    pop_size: int = typer.Option(12, help="NSGA-II population per sub-network."),
    generations: int = typer.Option(6, help="NSGA-II generations per sub-network."),
    constraint_steps: int = typer.Option(50, help="Cross-network constraint training steps per sub-network."),
    blocks_per_group: int = typer.Option(2, help="Swin blocks per searched sub-network."),
    calib_batch: int = typer.Option(4, help="Calibration samples."),
    config: Optional[Path] = config_option(),
) -> None:
    """Prune TEACHER to a FLOP budget; heads and MLP units are physically removed."""
    cfg = use_config(config)
    from fuxiops.compression.prune import prune_checkpoint
    from fuxiops.compression.pruning.emo_pms import EmoPmsConfig
    from fuxiops.models.torch_forecaster import TorchForecaster

    t = TorchForecaster.load(teacher, device="cpu")
    series = None
    if data is not None or (Path(cfg.location("world")) / "reanalysis.zarr").exists():
        series = resolve_series(data, cfg, t.coords)
    rep = prune_checkpoint(teacher, out, flops_budget, method=method,  # type: ignore[arg-type]
                           series=series, config=EmoPmsConfig(pop_size=pop_size, n_gen=generations,
                                                              constraint_steps=constraint_steps),
                           blocks_per_group=blocks_per_group, calib_batch=calib_batch, teacher=t)
    console.print(f"[green]pruned checkpoint written to {out}[/green]")
    _print_report(rep, ["method", "teacher_flops", "flops", "flops_fraction", "teacher_params", "params", "heads",
                        "mlp_hidden", "res_hidden", "error_before_training", "error_after_training",
                        "n_evaluations"])


@app.command("export")
def export_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Forecaster or assimilator checkpoint directory."),
    out: Path = typer.Option(..., "--out", help="ONNX file to write (model.onnx)."),
    opset: int = typer.Option(18, help="ONNX opset (>= 18)."),
    exporter: str = typer.Option("auto", help="auto (torch.export-based, falling back to TorchScript), dynamo "
                                 "or legacy."),
    external_data: Optional[bool] = typer.Option(None, "--external-data/--no-external-data",
                                                 help="Weights in OUT.data (default: when above 1 GiB)."),
    fp16_copy: bool = typer.Option(False, help="Also write OUT with .fp16.onnx for GPU serving."),
    config: Optional[Path] = config_option(),
) -> None:
    """Export a checkpoint to ONNX, check it (onnx.checker) and verify parity with PyTorch."""
    use_config(config)
    from fuxiops.compression.export import export_checkpoint
    from fuxiops.compression.onnx_export import to_fp16

    if exporter not in ("auto", "dynamo", "legacy"):
        raise FuxiopsError(f"unknown exporter {exporter!r}; allowed: auto, dynamo, legacy")
    with console.status(f"exporting {checkpoint} to {out}"):
        rep = export_checkpoint(checkpoint, out, opset=opset, exporter=exporter,  # type: ignore[arg-type]
                                external_data=external_data)
    console.print(f"[green]ONNX model written to {out}[/green]")
    _print_report(rep, ["opset", "parity_max_abs_normalised"])
    if fp16_copy:
        from fuxiops.compression.export import FP16_TOLERANCE, fp16_parity, forecaster_example_inputs, output_scale
        from fuxiops.compression.onnx_export import OnnxExportError, read_metadata

        if read_metadata(out).get("kind") == "forecaster":
            from fuxiops.models.torch_forecaster import TorchForecaster

            fc = TorchForecaster.load(checkpoint, device="cpu")
            par = fp16_parity(out, output_scale(fc), forecaster_example_inputs(fc, seed=1))
            console.print(f"  fp16 max abs (normalised)    {par['max_abs_normalised']:.3g}")
            if not par["finite"] or par["max_abs_normalised"] > FP16_TOLERANCE:
                raise OnnxExportError(f"the fp16 conversion of {out} differs from fp32 by "
                                      f"{par['max_abs_normalised']:.3g} (normalised units), more than "
                                      f"{FP16_TOLERANCE:g}; not writing the fp16 copy")
        half = to_fp16(out, out.with_suffix(".fp16.onnx"))
        import shutil
        from fuxiops.compression.onnx_export import sidecar_path
        shutil.copyfile(sidecar_path(out), sidecar_path(half))
        console.print(f"  fp16 copy                    {half}")


@app.command()
def evaluate(
    models: list[Path] = typer.Argument(..., help="Checkpoint directories and/or .onnx files to score."),
    truth: Optional[str] = typer.Option(None, help="Verifying states: a state store, 'world' (the testbed "
                                        "truth) or 'synthetic[:N]'."),
    days: str = typer.Option("1,3,5,10", help="Lead days, comma separated."),
    inits: int = typer.Option(4, min=1, help="Initial times, spread over the verifying series."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the scores as JSON here."),
    device: str = typer.Option("cpu", help="cpu, cuda or auto."),
    config: Optional[Path] = config_option(),
) -> None:
    """Latitude-weighted RMSE and ACC of Z500, T850, T2M, U10, MSL at the lead days, per model."""
    cfg = use_config(config)
    from rich.table import Table

    from fuxiops.compression.evaluate import evaluate as score
    from fuxiops.models.base import load_forecaster

    try:
        lead_days = [float(d) for d in days.split(",") if d.strip()]
    except ValueError:
        raise FuxiopsError(f"--days must be numbers separated by commas, got {days!r}") from None
    results = []
    series = None
    for m in models:
        fc = load_forecaster(m, device=device)
        if series is None:
            series = resolve_series(truth, cfg, fc.coords, store="truth")
        results.append(score(fc, series, lead_days, n_inits=inits, name=str(m), progress=True))
    table = Table(title="latitude-weighted RMSE / ACC")
    table.add_column("model")
    table.add_column("channel")
    for d in lead_days:
        table.add_column(f"day {d:g}", justify="right")
    for r in results:
        for j, ch in enumerate(r.channels):
            table.add_row(r.name, ch, *[f"{r.rmse[i, j]:.4g} / {r.acc[i, j]:.3f}" for i in range(len(lead_days))])
    console.print(table)
    if json_out:
        json_out.write_text(json.dumps([r.to_dict() for r in results], indent=1))
        console.print(f"scores written to {json_out}")


@app.command()
def flow(
    teacher: Path = typer.Option(..., "--teacher", help="Teacher forecaster checkpoint directory."),
    out_dir: Path = typer.Option(..., "--out-dir", help="Folder for the pruned, distilled and ONNX models."),
    flops_budget: float = typer.Option(0.25, help="FLOP budget of the pruned network (fraction or absolute)."),
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    truth: Optional[str] = typer.Option(None, help="Verifying states (default: as --data, the truth store)."),
    distill_steps: int = typer.Option(200, help="Distillation steps after pruning."),
    register_as: Optional[str] = typer.Option(None, help="Name to register the ONNX model under."),
    prune_method: str = typer.Option("emo-pms", help="emo-pms, magnitude, uniform or whole-nsga2."),
    config: Optional[Path] = config_option(),
) -> None:
    """Run the Prefect ``compress`` flow: prune -> distill -> export -> evaluate -> register."""
    cfg = use_config(config)
    from fuxiops.compression.flow import compress_flow

    res = compress_flow(teacher=str(teacher), out_dir=str(out_dir), flops_budget=flops_budget, data=data,
                        truth=truth, distill_steps=distill_steps, register_as=register_as, prune_method=prune_method,
                        config_path=str(config) if config else None, home=cfg.home)
    console.print_json(json.dumps(res, default=str))
