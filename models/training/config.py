"""Training configuration: one YAML file per training campaign, validated (``extra="forbid"``)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fuxiops.catalog import VARIABLE_SETS, VariableSet
from fuxiops.config import _format_validation_error
from fuxiops.errors import ConfigError
from fuxiops.grids import GRIDS, Grid, get_grid
from fuxiops.models.training.engine import OptimConfig


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StageOptim(_M):
    """Optimiser settings of a stage."""

    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    warmup_steps: int = Field(50, ge=0)
    total_steps: int = Field(500, ge=1)
    grad_clip: float = Field(1.0, gt=0)
    batch_size: int = Field(2, ge=1)
    checkpoint_every: int = Field(50, ge=1)
    log_every: int = Field(10, ge=1)

    def engine(self, seed: int) -> OptimConfig:
        return OptimConfig(lr=self.lr, weight_decay=self.weight_decay, warmup_steps=self.warmup_steps,
                           total_steps=self.total_steps, grad_clip=self.grad_clip, batch_size=self.batch_size,
                           checkpoint_every=self.checkpoint_every, log_every=self.log_every, seed=seed)


class Period(_M):
    """A closed time range (ISO times)."""

    start: datetime
    end: datetime

    @field_validator("start", "end", mode="before")
    @classmethod
    def _parse(cls, v: Any) -> Any:
        # Accept what people type: 2023-01-08, 2023-01-08T18, 2023-01-08 18:00.
        if isinstance(v, str):
            import pandas as pd

            try:
                return pd.Timestamp(v).to_pydatetime()
            except ValueError:
                raise ValueError(f"not a date/time: {v!r} (use e.g. 2023-01-08T18)") from None
        return v


class AssimilatorStage(StageOptim):
    """Stage 2: assimilator pretraining."""

    min_lead: int = Field(6, ge=6)
    """Shortest background lead drawn from the NWP pool (hours)."""
    max_lead: int = Field(180, ge=6)
    """Longest background lead (hours)."""
    sim_fraction: float = Field(0.5, ge=0, le=1)
    """Probability that a sample uses simulated rather than raw observations (0 = raw only)."""
    obs_weight: float = Field(1.0, ge=0)
    """Weight of L_obs in the loss (0 = reanalysis labels only)."""
    debias_pool: bool = True
    """Subtract the pool's mean error against the reanalysis (per lead and grid point, training period)
    from every NWP background, in this stage and in the unroll's warm starts, so that the NWP model's
    own bias is not learned as a fixed increment that cycling would add to every own background."""
    own_fraction: float = Field(0.0, ge=0, le=1)
    """Share of samples whose background is the campaign's stage-1 forecaster's own forecast from the
    reanalysis (``own_max_lead`` hours at most) instead of an NWP-pool forecast: when it cycles, the
    assimilator corrects the forecaster's errors, not the NWP model's."""
    own_max_lead: int = Field(24, ge=6, le=240)
    """Longest lead (hours, a multiple of 6) of those own forecasts; leads are drawn uniformly from 6 h."""
    innovations: bool = True
    """Feed observation-minus-background of the directly observed channels to the network (False: it
    must learn that subtraction itself from the observation and background streams)."""
    spread_km: float = Field(0.0, ge=0, le=5000)
    """Length scale (km) of the assimilator's successive-correction term on those innovations
    (``AssimilatorArch.spread_km``; 0: the network's increment only)."""

    @field_validator("own_max_lead")
    @classmethod
    def _six_hourly(cls, v: int) -> int:
        if v % 6:
            raise ValueError(f"own_max_lead must be a multiple of 6 hours, got {v}")
        return v


class UnrollStage(StageOptim):
    """Stage 3: recursive unrolling through K cycles."""

    cycles: int = Field(4, ge=1, le=12)
    """Cycles of analysis -> forecast -> background per sample (paper: 4-6)."""
    warm_lead: int = Field(6, ge=6)
    """Lead (hours) of the offline NWP forecast that starts each unrolled chain."""
    sim_fraction: float = Field(0.0, ge=0, le=1)
    obs_weight: float = Field(1.0, ge=0)
    checkpointing: bool = True
    """Activation checkpointing of the forecaster inside the unrolled graph."""


class FinetuneStage(StageOptim):
    """Stage 4: forecaster multi-step fine-tune, steps growing from 1 to ``max_rollout``."""

    max_rollout: int = Field(4, ge=1, le=40)
    checkpointing: bool = True


class CycledStage(StageOptim):
    """Stage 5: the assimilator adapts to the backgrounds of its own cycling (the closed loop).

    Stages 2 and 3 show the assimilator NWP backgrounds and chains of at most ``unroll.cycles``
    cycles; cycling for weeks visits states neither produced (its own drift). Each round cycles
    the current pair on its own 6-hour forecasts with raw observations, as the operational
    cycle does, over ``chains`` stretches of the training period, then trains the assimilator
    (``total_steps`` per round) on those backgrounds mixed with NWP-pool samples.
    """

    rounds: int = Field(0, ge=0)
    """Collect-then-train rounds; each round cycles with the previous round's result. 0 (the default)
    skips the stage: on the year testbed two rounds made cycling drift faster (docs/training.md)."""
    chains: int = Field(16, ge=1)
    """Cycling chains per round, started at times spread evenly over the training period."""
    chain_cycles: int = Field(40, ge=2)
    """Cycles per chain (40 = 10 days)."""
    nwp_fraction: float = Field(0.25, ge=0, le=1)
    """Share of training draws that are stage-2 samples (NWP-pool backgrounds), so that what the
    assimilator learned there is kept."""
    obs_weight: float = Field(1.0, ge=0)


class TrainConfig(_M):
    """A training campaign: data, networks and the five stages."""

    world: str
    """Folder with reanalysis.zarr, nwp.zarr, static.zarr and the gridded observations
    (written by ``fuxiops train prepare``)."""
    out: str
    """Folder for checkpoints, metrics and plots of each stage."""
    grid: str = "2.8125deg"
    variables: Literal["testbed", "production"] = "testbed"
    preset: str = "small"
    seed: int = 0
    train_period: Period
    """Times used for training (the test period must be disjoint)."""
    state_cache_gib: float = Field(4.0, ge=0)
    """Memory for reanalysis states kept after first read (a year at 2.8125deg is ~3 GiB: all of it)."""
    obs_groups: list[str] = Field(default_factory=lambda: ["surface", "upper_air", "gnssro", "radiance"])
    insitu_groups: list[str] = Field(default_factory=lambda: ["surface", "upper_air"])
    """Groups whose channels observe state channels directly (used by L_obs)."""
    forecaster: StageOptim = Field(default_factory=StageOptim)
    assimilator: AssimilatorStage = Field(default_factory=AssimilatorStage)
    unroll: UnrollStage = Field(default_factory=lambda: UnrollStage(lr=1e-4, total_steps=200, batch_size=1))
    finetune: FinetuneStage = Field(default_factory=lambda: FinetuneStage(lr=1e-4, total_steps=200, batch_size=1))
    cycled: CycledStage = Field(default_factory=lambda: CycledStage(lr=1e-4, total_steps=300, warmup_steps=20))

    def stages(self) -> list[str]:
        """The stages this campaign runs, in order (stage 5 only when it has rounds)."""
        from fuxiops.models.training.stages import STAGES

        return [s for s in STAGES if s != "cycled" or self.cycled.rounds > 0]

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.grid not in GRIDS:
            raise ValueError(f"unknown grid {self.grid!r}; allowed: {', '.join(GRIDS)}")
        from fuxiops.models.presets import PRESETS

        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; allowed: {', '.join(PRESETS)}")
        return self

    @property
    def grid_spec(self) -> Grid:
        return get_grid(self.grid)

    @property
    def variable_set(self) -> VariableSet:
        return VARIABLE_SETS[self.variables]

    @property
    def world_path(self) -> Path:
        return Path(self.world).expanduser()

    @property
    def out_path(self) -> Path:
        return Path(self.out).expanduser()


def load_train_config(path: str | Path, **overrides: Any) -> TrainConfig:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"training configuration {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"malformed YAML in {p}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    data.update(overrides)
    try:
        return TrainConfig(**data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, str(p))) from None
