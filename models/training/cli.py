"""``fuxiops train``: the FuXiWeather2 training stages as commands.

Here ``--config`` names the training campaign YAML (see
``models/training/config.py``): world folder, output folder, preset, training
period and per-stage optimiser settings. Stages run under ``torchrun`` too
(DDP; gloo on CPU).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fuxiops.cli.common import console

app = typer.Typer(help="Train the FuXiWeather2 networks (prepare, then stages 1-5).", no_args_is_help=True)

ConfigOpt = typer.Option(..., "--config", "-c", help="Training campaign YAML (world, out, preset, period, stages).")


def _load(config: Path):  # type: ignore[no-untyped-def]
    from fuxiops.models.training.config import load_train_config

    return load_train_config(config)


@app.command()
def prepare(config: Path = ConfigOpt,
            obs: bool = typer.Option(True, "--obs/--no-obs",
                                     help="Also grid the world's raw and simulated BUFR observations."),
            workers: int = typer.Option(1, "--workers", min=1, help="Cycles decoded in parallel processes."),
            sim_every_h: int = typer.Option(6, "--sim-every-h", help="Grid the simulated observations only at "
                                            "cycles every 6, 12 or 24 h (00 UTC first): stage 2 draws its samples "
                                            "from those cycles; raw observations keep every cycle. A later "
                                            "prepare with a smaller value fills in the rest.")) -> None:
    """Compute normalisation statistics (and gridded observations) once for a campaign.

    Resumable: rerun after an interruption and it continues at the first cycle not yet written.
    """
    from fuxiops.models.training.prepare import prepare_campaign

    cfg = _load(config)
    summary = prepare_campaign(cfg, grid_obs=obs, workers=workers, sim_every_h=sim_every_h)
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
_stage("cycled", "Stage 5: the assimilator adapts to the backgrounds of its own cycling (rounds of: cycle the "
       "pair on the training period with raw observations, train on the backgrounds met).")


@app.command("all")
def all_stages(config: Path = ConfigOpt,
               skip: list[str] = typer.Option([], "--skip", help="Stages to skip (e.g. --skip unroll for the "
                                              "ablation without recursive unrolling).")) -> None:
    """Run prepare (if needed) and the stages in order."""
    from fuxiops.models.training.prepare import prepare_campaign
    from fuxiops.models.training.stages import STAGE_FUNCTIONS

    cfg = _load(config)
    if not (cfg.world_path / "training" / "normalisation.json").is_file():
        prepare_campaign(cfg, grid_obs=True)
    for s in cfg.stages():
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
    records = {}
    for kind, src in final_checkpoints(cfg).items():
        target = dest / kind
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(src, target, ignore=shutil.ignore_patterns("training_state*"))
        records[kind] = json.loads((target / "metadata.json").read_text()).get("training", {})
        console.print(f"{kind}: {src} -> {target}")
    shutil.copyfile(config, dest / "campaign.yaml")
    (dest / "training_record.md").write_text(training_record(records))
    console.print(f"training record: {dest / 'training_record.md'}")


def training_record(records: dict) -> str:  # type: ignore[type-arg]
    """A readable summary of how shipped checkpoints were trained (the full record is in metadata.json)."""
    lines = ["# Training record of the shipped checkpoints", "",
             "Generated by `fuxiops train ship` from each checkpoint's metadata.json (`training`).", ""]
    for kind, rec in records.items():
        camp = rec.get("campaign", {})
        period = camp.get("train_period", {})
        lines += [f"## {kind}", "", f"- world: `{camp.get('world')}`, grid {camp.get('grid')}, preset "
                  f"{camp.get('preset')}, seed {camp.get('seed')}",
                  f"- training period: {period.get('start')} .. {period.get('end')}",
                  "- data sha256: " + ", ".join(f"{k} `{v[:12]}`" for k, v in rec.get("data_sha256", {}).items()),
                  "", "| stage | steps | wall (s) | samples/s | final loss |", "| --- | --- | --- | --- | --- |"]
        for stage, st in rec.get("stages", {}).items():
            loss = st.get("final", {}).get("loss")
            lines.append(f"| {stage} | {st.get('steps')} | {st.get('wall_seconds')} | "
                         f"{st.get('samples_per_second')} | {'' if loss is None else f'{loss:.4f}'} |")
        lines.append("")
    return "\n".join(lines)
