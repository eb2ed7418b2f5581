"""The training stages end to end on a tiny world, and the losses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fuxiops.errors import ConfigError
from fuxiops.models.torch_assimilator import TorchAssimilator
from fuxiops.models.torch_forecaster import TorchForecaster
from fuxiops.models.training.config import TrainConfig, load_train_config
from fuxiops.models.training.data import InsituTarget
from fuxiops.models.training.losses import obs_loss
from fuxiops.models.training.stages import (final_checkpoints, prepare_normalisation, rollout_steps,
                                            train_assimilator, train_cycled, train_finetune, train_forecaster,
                                            train_unroll)

FAST = {"total_steps": 3, "warmup_steps": 1, "batch_size": 1, "checkpoint_every": 3, "log_every": 1}


def _cfg(world: Path, out: Path) -> TrainConfig:
    return TrainConfig(world=str(world), out=str(out), grid="11.25deg", preset="tiny",
                       train_period={"start": "2023-01-01", "end": "2023-01-08T18"},
                       obs_groups=["surface", "radiance"], insitu_groups=["surface"],
                       forecaster=FAST, assimilator={**FAST, "max_lead": 24},
                       unroll={**FAST, "cycles": 2}, finetune={**FAST, "max_rollout": 3},
                       cycled={**FAST, "rounds": 2, "chains": 2, "chain_cycles": 3})


def test_stages_end_to_end(tiny_world: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_world, tmp_path / "run")
    stats = prepare_normalisation(cfg)
    assert stats.std.min() > 0 and len(stats.channels) == 56
    f1 = train_forecaster(cfg, progress=False)
    a1 = train_assimilator(cfg, progress=False)
    fc1 = TorchForecaster.load(f1)
    as1 = TorchAssimilator.load(a1)
    assert as1.obs_channels == {"surface": 4, "radiance": 3}
    train_unroll(cfg, progress=False)
    fc2 = TorchForecaster.load(tmp_path / "run" / "unroll" / "forecaster")
    as2 = TorchAssimilator.load(tmp_path / "run" / "unroll" / "assimilator")
    # Gradients went through both networks in the unrolled cycle.
    assert any(not torch.equal(a, b) for a, b in zip(fc1.module.parameters(), fc2.module.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(as1.module.parameters(), as2.module.parameters()))
    f4 = train_finetune(cfg, progress=False)
    _check_cycled_stage(cfg, f4, tmp_path / "run")
    final = final_checkpoints(cfg)
    assert final["forecaster"] == f4
    assert final["assimilator"] == tmp_path / "run" / "cycled" / "assimilator"
    # A campaign that no longer runs stage 5 ignores what an earlier run left in cycled/.
    off = cfg.model_copy(update={"cycled": cfg.cycled.model_copy(update={"rounds": 0})})
    assert final_checkpoints(off)["assimilator"] == tmp_path / "run" / "unroll" / "assimilator"
    fc4 = TorchForecaster.load(f4)
    assert set(fc4.training["stages"]) == {"forecaster", "unroll", "finetune"}
    assert fc4.training["data_sha256"]["reanalysis.zarr"]
    for stage in ("forecaster", "assimilator", "unroll", "finetune"):
        assert (tmp_path / "run" / stage / "metrics.csv").exists()
        assert (tmp_path / "run" / stage / "loss.png").exists()
    import pandas as pd

    # Stage 2 logs what each analysis has to beat: its background's own L_state against the label.
    logged = pd.read_csv(tmp_path / "run" / "assimilator" / "metrics.csv")
    assert (logged["loss_state_background"] > 0).all() and (logged["loss_state"] > 0).all()

    # Shipping copies the final checkpoints with the campaign and a readable training record.
    import yaml
    from typer.testing import CliRunner

    from fuxiops.models.training.cli import app

    campaign = tmp_path / "campaign.yaml"
    campaign.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    res = CliRunner().invoke(app, ["ship", "--config", str(campaign), "--to", str(tmp_path / "ship")])
    assert res.exit_code == 0, res.output
    shipped = TorchForecaster.load(tmp_path / "ship" / "forecaster")
    assert shipped.training["stages"].keys() == fc4.training["stages"].keys()
    assert not (tmp_path / "ship" / "forecaster" / "training_state").exists()
    record = (tmp_path / "ship" / "training_record.md").read_text()
    assert "| finetune | 3 |" in record and "| assimilator | 3 |" in record and "| cycled | 6 |" in record
    assert (tmp_path / "ship" / "campaign.yaml").read_text() == campaign.read_text()


def _check_cycled_stage(cfg: TrainConfig, forecaster: Path, run: Path) -> None:
    """Stage 5 cycles the pair on its own forecasts and trains the assimilator on what it met."""
    from fuxiops.models.training.cycled import OwnBackgrounds
    from fuxiops.models.training.stages import TrainingData, _clock, _obs_tensors

    before = TorchAssimilator.load(run / "unroll" / "assimilator")
    out = train_cycled(cfg, progress=False)
    after = TorchAssimilator.load(out)
    assert any(not torch.equal(a, b) for a, b in zip(before.module.parameters(), after.module.parameters()))
    rounds = [OwnBackgrounds(run / "cycled" / f"round_{r}" / "own") for r in (1, 2)]
    assert all(len(o) == 2 * 3 for o in rounds)
    assert rounds[0].stats["starts"] != rounds[1].stats["starts"]  # each round cycles other weather
    # Round 1's second background is the forecaster's 6-hour forecast from the first analysis.
    data = TrainingData(cfg)
    fc = TorchForecaster.load(forecaster)
    o = rounds[0]
    t0 = np.datetime64(o.times[0], "ns")
    obs, present = _obs_tensors(data, before.obs_channels, [t0], [False])
    with torch.no_grad():
        bg0 = torch.from_numpy(np.array(o.array[:1]))
        ana = before.module.eval()(bg0, obs, present, _clock([t0]))
        prev = torch.from_numpy(data.pool.cold_start(t0 - np.timedelta64(6, "h")))
        nxt = fc.module.eval()(torch.stack([prev[None], ana], 1), _clock([t0 + np.timedelta64(6, "h")]))
    np.testing.assert_allclose(np.array(o.array[1]), nxt[0, :len(data.channels)].numpy(), rtol=1e-5, atol=1e-3)
    assert o.times[1] - o.times[0] == np.timedelta64(6, "h")
    assert len(o.stats["background_error_per_cycle"]) == 3
    rec = after.training["stages"]["cycled"]
    assert [r["round"] for r in rec["rounds"]] == [1, 2] and rec["steps"] == 2 * 3
    assert all(r["cycling_seconds"] > 0 and r["training_seconds"] > 0 for r in rec["rounds"])
    # A finished stage reruns without cycling again.
    stamp = (run / "cycled" / "round_1" / "own" / "backgrounds.npy").stat().st_mtime_ns
    train_cycled(cfg, progress=False)
    assert (run / "cycled" / "round_1" / "own" / "backgrounds.npy").stat().st_mtime_ns == stamp


def test_obs_loss_is_zero_at_perfect_state_and_counts_only_observed_cells() -> None:
    state = torch.zeros(1, 2, 4, 8)
    state[0, 1] = 3.0
    g = torch.zeros(1, 2, 4, 8)
    g[0, 0, 1, 2] = (3.0 - 1.0) / 2.0  # normalised obs value: physical 3 with scale 2, offset 1
    g[0, 1, 1, 2] = 1.0
    tgt = [InsituTarget("surface", 0, 1, 1, 2.0, 1.0)]
    w = torch.ones(4)
    std = torch.ones(2)
    assert float(obs_loss(state, {"surface": g}, tgt, std, w, [0.2])) == pytest.approx(0.0)
    state[0, 1, 1, 2] = 5.0
    state[0, 1, 0, 0] = 100.0  # unobserved: must not count
    assert float(obs_loss(state, {"surface": g}, tgt, std, w, [0.2])) == pytest.approx(2.0)


def test_stage_five_runs_only_with_rounds(tiny_world: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_world, tmp_path / "run")
    assert cfg.stages() == ["forecaster", "assimilator", "unroll", "finetune", "cycled"]
    off = cfg.model_copy(update={"cycled": cfg.cycled.model_copy(update={"rounds": 0})})
    assert off.stages() == ["forecaster", "assimilator", "unroll", "finetune"]
    assert TrainConfig(world="w", out="o", train_period=cfg.train_period).cycled.rounds == 0  # off by default


def test_rollout_schedule_grows() -> None:
    steps = [rollout_steps(s, 100, 4) for s in range(100)]
    assert steps[0] == 1 and steps[-1] == 4 and steps == sorted(steps)


def test_bad_training_config(tmp_path: Path) -> None:
    p = tmp_path / "t.yaml"
    p.write_text("world: w\nout: o\ntrain_period: {start: 2023-01-01, end: 2023-02-01}\npreset: huge\n")
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        load_train_config(p)
    p.write_text("world: w\nout: o\ntrain_period: {start: 2023-01-01, end: 2023-02-01}\nforecaster: {lr: -1}\n")
    with pytest.raises(ConfigError, match="forecaster.lr"):
        load_train_config(p)


def test_missing_simulated_store_is_an_error_not_a_swap(tiny_world: Path, tmp_path: Path) -> None:
    """A stage that draws simulated observations refuses to start without them (it never falls back to raw)."""
    import shutil

    from fuxiops.errors import DataError
    from fuxiops.models.training.stages import TrainingData

    world = tmp_path / "world"
    shutil.copytree(tiny_world, world, ignore=shutil.ignore_patterns("gridded_sim.zarr"))
    cfg = _cfg(world, tmp_path / "run")
    with pytest.raises(DataError, match="gridded_sim.zarr"):
        train_assimilator(cfg, progress=False)
    data = TrainingData(cfg)
    assert data.require_obs(0.0, "assimilator") == ("raw",)
    t = data.times[0]
    assert data.has_obs(t, ("raw",)) and not data.has_obs(t, ("raw", "sim"))
    assert data.obs_at(t, simulated=True) == {}


def test_nwp_pool_bias_is_estimated_per_lead_and_removed(tiny_world: Path, tmp_path: Path) -> None:
    """A pool 3 K too warm at 2 m gives backgrounds without that offset; the estimate is cached per period."""
    import shutil

    import xarray as xr

    from fuxiops.models.training.stages import TrainingData

    world = tmp_path / "world"
    shutil.copytree(tiny_world, world, ignore=shutil.ignore_patterns("nwp.zarr", "nwp_bias.npz"))
    nwp = xr.open_zarr(tiny_world / "nwp.zarr").load()
    (nwp.assign(t2m=nwp.t2m + 3.0)).to_zarr(world / "nwp.zarr", mode="w")
    cfg = _cfg(world, tmp_path / "run")
    data = TrainingData(cfg)
    pool = data.pool
    ti = data.variables.state_names.index("t2m")
    assert set(pool.bias) >= set(pool.steps)
    for lead in pool.steps:
        assert float(pool.bias[lead][ti].mean()) == pytest.approx(3.0, abs=0.2)
    t = data.times[8]
    lead = pool.leads_valid_at(t)[-1]
    d = pool.background(t, lead)[ti] - data.reanalysis.at(t)[ti]
    assert abs(float(d.mean())) < 0.2
    cache = world / "training" / "nwp_bias.npz"
    stamp = cache.stat().st_mtime_ns
    assert TrainingData(cfg).pool.bias.keys() == pool.bias.keys() and cache.stat().st_mtime_ns == stamp
    off = TrainingData(cfg.model_copy(update={"assimilator": cfg.assimilator.model_copy(
        update={"debias_pool": False})}))
    raw = off.pool.background(t, lead)[ti] - data.reanalysis.at(t)[ti]
    assert float(raw.mean()) == pytest.approx(3.0, abs=0.2)
    # A cold start takes the NWP state as it is, from the shortest lead (here the NWP analysis).
    assert pool.cold_start_lead(t) == 0 and pool.cold_start_lead(t + np.timedelta64(6, "h")) == 6
    cold = pool.cold_start(t)[ti] - data.reanalysis.at(t)[ti]
    assert float(cold.mean()) == pytest.approx(3.0, abs=0.2)


def test_own_forecast_backgrounds(tiny_world: Path, tmp_path: Path) -> None:
    """``own_fraction`` swaps NWP backgrounds for the stage-1 forecaster's forecasts from the reanalysis."""
    from fuxiops.models.training.stages import OwnForecasts, TrainingData, _clock, _own_lead

    cfg = _cfg(tiny_world, tmp_path / "run")
    cfg = cfg.model_copy(update={"assimilator": cfg.assimilator.model_copy(
        update={"own_fraction": 1.0, "own_max_lead": 12})})
    prepare_normalisation(cfg)
    fc = TorchForecaster.load(train_forecaster(cfg, progress=False))
    data = TrainingData(cfg)
    own = OwnForecasts(fc, data.reanalysis, 12)
    h6 = np.timedelta64(6, "h")
    t0, t = data.times[0], data.times[3]
    assert own.leads_at(t0) == [] and own.leads_at(data.times[2]) == [6] and own.leads_at(t) == [6, 12]
    x = torch.from_numpy(np.stack([data.reanalysis.at(t - 3 * h6), data.reanalysis.at(t - 2 * h6)]))[None]
    with torch.no_grad():
        y1 = fc.module.eval()(x, _clock([t - h6]))[:, :len(data.channels)]
        y2 = fc.module(torch.stack([x[:, 1], y1], 1), _clock([t]))[:, :len(data.channels)]
    np.testing.assert_allclose(own.background(t, 12), y2[0].numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(own.background(t, 12), own.background(t, 6))
    # The draw is reproducible per (seed, step, sample); fraction 0 never draws, no leads never draws.
    draws = [_own_lead(0, s, 1, 0.5, [6, 12]) for s in range(40)]
    assert draws == [_own_lead(0, s, 1, 0.5, [6, 12]) for s in range(40)]
    assert {None, 6, 12} == set(draws)
    assert _own_lead(0, 3, 1, 0.0, [6, 12]) is None and _own_lead(0, 3, 1, 1.0, []) is None
    asm = TorchAssimilator.load(train_assimilator(cfg, progress=False))
    assert asm.training["stages"]["assimilator"]["config"]["own_fraction"] == 1.0
