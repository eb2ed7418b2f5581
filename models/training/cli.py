"""``fuxiops train``: the four FuXiWeather2 training stages as commands.

Here ``--config`` names the training campaign YAML (see
``models/training/config.py``): world folder, output folder, preset, training
period and per-stage optimiser settings. Stages run under ``torchrun`` too
(DDP; gloo on CPU).
"""

from __future__ import annotations

from pathlib import Path

import typer

from fuxiops.cli.common import console

app = typer.Typer(help="Train the FuXiWeather2 networks (prepare, then stages 1-4).", no_args_is_help=True)

ConfigOpt = typer.Option(..., "--config", "-c", help="Training campaign YAML (world, out, preset, period, stages).")


def _load(config: Path):  # type: ignore[no-untyped-def]
    from fuxiops.models.training.config import load_train_config

    return load_train_config(config)


@app.command()
def prepare(config: Path = ConfigOpt,
            obs: bool = typer.Option(True, "--obs/--no-obs",
                                     help="Also grid the world's raw and simulated BUFR observations."),
            workers: int = typer.Option(1, "--workers", min=1, help="Cycles decoded in parallel processes.")) -> None:
    """Compute normalisation statistics (and gridded observations) once for a campaign.

    Resumable: rerun after an interruption and it continues at the first cycle not yet written.
    """
    from fuxiops.models.training.prepare import prepare_campaign

    cfg = _load(config)
    summary = prepare_campaign(cfg, grid_obs=obs, workers=workers)
    for k, v in summary.items():
        console.print(f"{k}: {v}")


def _stage(name: str, help_text: str) -> None:
    def command(config: Path = ConfigOpt) -> None:
        from fuxiops.models.training.stages import STAGE_FUNCTIONS

        cfg = _load(config)
        path = STAGE_FUNCTIONS[name](cfg)
        console.print(f"{name}: checkpoint written under {path}")

    command.__doc__ = help_text
    app.command(name)(command)


_stage("forecaster", "Stage 1: forecaster one-step pretraining (latitude-weighted L1 on the reanalysis).")
_stage("assimilator", "Stage 2: assimilator pretraining on NWP-pool backgrounds (6-180 h) with raw/simulated "
       "observations.")
_stage("unroll", "Stage 3: recursive unrolling, K cycles of analysis -> forecast -> background, "
       "gradients through both networks and time (L_state + L_obs).")
_stage("finetune", "Stage 4: forecaster multi-step fine-tune with growing autoregressive steps.")


@app.command("all")
def all_stages(config: Path = ConfigOpt,
               skip: list[str] = typer.Option([], "--skip", help="Stages to skip (e.g. --skip unroll for the "
                                              "ablation without recursive unrolling).")) -> None:
    """Run prepare (if needed) and the four stages in order."""
    from fuxiops.models.training.prepare import prepare_campaign
    from fuxiops.models.training.stages import STAGE_FUNCTIONS, STAGES

    cfg = _load(config)
    if not (cfg.world_path / "training" / "normalisation.json").is_file():
        prepare_campaign(cfg, grid_obs=True)
    for s in STAGES:
        if s in skip:
            console.print(f"skipping {s}")
            continue
        STAGE_FUNCTIONS[s](cfg)
    console.print(f"done: checkpoints under {cfg.out_path}")


@app.command()
def ship(config: Path = ConfigOpt,
         to: Path = typer.Option(None, "--to", help="Destination (default: the package's shipped checkpoints "
                                 "for the campaign's grid).")) -> None:
    """Copy a campaign's final forecaster and assimilator to where `default` checkpoints are looked up."""
    import shutil

    from fuxiops.models.base import SHIPPED_CHECKPOINTS
    from fuxiops.models.training.stages import final_checkpoints

    cfg = _load(config)
    dest = to or SHIPPED_CHECKPOINTS / cfg.grid
    for kind, src in final_checkpoints(cfg).items():
        target = dest / kind
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(src, target, ignore=shutil.ignore_patterns("training_state*"))
        console.print(f"{kind}: {src} -> {target}")
