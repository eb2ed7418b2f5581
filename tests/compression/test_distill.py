"""Distillation training: learning, resumption, checkpoints and the CLI-level entry point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fuxiops.compression.data import synthetic_series
from fuxiops.compression.distill import TrainConfig, distill, distill_checkpoint
from fuxiops.compression.losses import KDConfig
from fuxiops.errors import FuxiopsError
from fuxiops.models.base import load_forecaster

from .conftest import GRID, VARS


def _toy(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.GELU(), torch.nn.Conv2d(8, 3, 1))


def _sampler(step: int):
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(2, 3, 17, 32, generator=g)
    return (x,), torch.roll(x, 1, dims=-1) * 0.5


def test_distill_learns_and_resumes(tmp_path: Path) -> None:
    teacher = _toy(1)
    cfg = TrainConfig(steps=6, lr=3e-3, checkpoint_every=3)
    kd = KDConfig(method="dynamic", tau=1.0, kd_weight=0.5)
    a = _toy(0)
    res_a = distill(a, teacher, _sampler, 3, kd, cfg, tmp_path / "a", progress=False)
    assert res_a.history[-1]["l1"] < res_a.history[0]["l1"]
    assert res_a.controller_scale is not None and res_a.controller_scale != [1.0, 1.0, 1.0]

    # Interrupt after the step-3 checkpoint, then resume: same weights as the uninterrupted run.
    b = _toy(0)

    def failing(step: int):
        if step == 4:
            raise KeyboardInterrupt
        return _sampler(step)

    with pytest.raises(KeyboardInterrupt):
        distill(b, teacher, failing, 3, kd, cfg, tmp_path / "b", progress=False)
    b2 = _toy(7)  # a fresh process: weights come from the state
    res_b = distill(b2, teacher, _sampler, 3, kd, cfg, tmp_path / "b", progress=False)
    assert res_b.resumed_from == 3
    for pa, pb in zip(a.parameters(), b2.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)
    with pytest.raises(FuxiopsError, match="was written for distillation"):
        distill(_toy(0), teacher, _sampler, 3, KDConfig(method="cwd"), cfg, tmp_path / "b", progress=False)


def test_distill_checkpoint_student_preset(teacher_ckpt: Path, tmp_path: Path) -> None:
    series = synthetic_series(VARS, GRID, 12, seed=0)
    out = tmp_path / "student"
    rep = distill_checkpoint(teacher_ckpt, out, series, student_preset="tiny",
                             kd=KDConfig(method="dynamic"), train=TrainConfig(steps=2, checkpoint_every=1),
                             batch=1, state_dir=tmp_path / "state", progress=False)
    assert rep["steps"] == 2 and len(rep["controller_scale"]) == len(VARS.state_names)
    fc = load_forecaster(out)
    assert fc.training["distillation"]["method"] == "dynamic"
    out_arr = fc.step(series.data[:2], series.times[1])
    assert out_arr.shape == (6, *GRID.shape) and np.isfinite(out_arr).all()
    with pytest.raises(FuxiopsError, match="exactly one"):
        distill_checkpoint(teacher_ckpt, out, series, progress=False)
