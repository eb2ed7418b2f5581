"""Training engine: schedule, exact resume after a kill, DDP over gloo with 2 processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from fuxiops.errors import FuxiopsError
from fuxiops.models.training.engine import OptimConfig, lr_factor, sample_order, train

X = torch.linspace(-1, 1, 64).reshape(-1, 1).repeat(1, 4) * torch.tensor([1.0, -2.0, 0.5, 3.0])
Y = (X @ torch.tensor([[0.3], [0.1], [-0.4], [0.2]])).squeeze(-1) + 0.7


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.SiLU(), torch.nn.Dropout(0.1), torch.nn.Linear(8, 1))


def _loss(model: torch.nn.Module, idx: list[int], step: int) -> tuple[torch.Tensor, dict[str, float]]:
    i = torch.tensor(idx)
    pred = model(X[i]).squeeze(-1)
    return (pred - Y[i]).abs().mean(), {}


CFG = OptimConfig(lr=1e-2, warmup_steps=3, total_steps=12, batch_size=4, checkpoint_every=2, log_every=1)


def test_schedule_warmup_then_cosine() -> None:
    f = [lr_factor(s, CFG) for s in range(CFG.total_steps)]
    assert f[0] == pytest.approx(1 / 3) and f[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[3:], f[4:])) and f[-1] >= CFG.min_lr_ratio


def test_weighted_sample_order_follows_the_weights() -> None:
    """Mixing sources of unequal size: draws follow the weights, zero weight is never drawn, and the
    order is the same every time (resuming replays it)."""
    w = [0.0, 1.0, 3.0]
    draws = [i for b in sample_order(3, 400, 5, seed=7, weights=w) for i in b]
    assert draws == [i for b in sample_order(3, 400, 5, seed=7, weights=w) for i in b]
    counts = [draws.count(i) for i in range(3)]
    assert counts[0] == 0 and 2.6 < counts[2] / counts[1] < 3.4
    with pytest.raises(FuxiopsError, match="weights"):
        next(sample_order(3, 1, 1, seed=0, weights=[1.0, -1.0, 1.0]))


def test_kill_and_resume_equals_uninterrupted(tmp_path: Path) -> None:
    m1 = _model()
    r1 = train(m1, _loss, len(X), CFG, tmp_path / "a", "toy", progress=False)
    assert r1.steps == 12 and (tmp_path / "a" / "loss.png").exists()
    m2 = _model()
    train(m2, _loss, len(X), CFG, tmp_path / "b", "toy", progress=False, stop_after=6)
    state = json.loads((tmp_path / "b" / "training_state" / "state.json").read_text())
    assert state["step"] == 6
    m3 = _model()  # a fresh process would start from fresh weights: resume must restore everything
    r3 = train(m3, _loss, len(X), CFG, tmp_path / "b", "toy", progress=False)
    assert r3.steps == 12
    for a, b in zip(m1.state_dict().values(), m3.state_dict().values()):
        assert torch.equal(a, b)
    # And the training did something.
    assert r1.final_metrics["loss"] < 0.5


def test_prefetched_batches_give_the_same_weights(tmp_path: Path) -> None:
    """A load_fn read one step ahead in a thread sees the same (indices, step) and trains identically."""
    seen: list[tuple[list[int], int]] = []

    def load(idx: list[int], step: int) -> torch.Tensor:
        seen.append((list(idx), step))
        return torch.tensor(idx)

    def loss(model: torch.nn.Module, i: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        return _loss(model, i.tolist(), step)

    m1, m2 = _model(), _model()
    train(m1, _loss, len(X), CFG, tmp_path / "a", "toy", progress=False)
    train(m2, loss, len(X), CFG, tmp_path / "b", "toy", progress=False, stop_after=5, load_fn=load)
    train(m2, loss, len(X), CFG, tmp_path / "b", "toy", progress=False, load_fn=load)
    # Stopped after 5 steps; the last checkpoint (every 2) was at step 4, where the rerun resumes.
    assert [s for _, s in seen] == list(range(5)) + list(range(4, 12))
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)


def test_ddp_gloo_two_processes_matches_single(tmp_path: Path) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_engine import _model, _loss, X
        from fuxiops.models.training.engine import OptimConfig, train
        cfg = OptimConfig(lr=1e-2, warmup_steps=3, total_steps=6, batch_size=2, checkpoint_every=100)
        m = _model()
        m[2].p = 0.0  # no dropout: ranks must see identical randomness-free computations
        train(m, _loss, len(X), cfg, __import__('pathlib').Path(sys.argv[1]), 'ddp', progress=False)
        import torch.distributed as dist
        if dist.get_rank() == 0:
            torch.save({{k: v for k, v in m.state_dict().items()}}, sys.argv[1] + '/w.pt')
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(script), str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    ddp = torch.load(out / "w.pt", weights_only=True)
    single = _model()
    single[2].p = 0.0
    train(single, _loss, len(X), OptimConfig(lr=1e-2, warmup_steps=3, total_steps=6, batch_size=4,
                                             checkpoint_every=100), tmp_path / "single", "single", progress=False)
    for k, v in single.state_dict().items():
        torch.testing.assert_close(ddp[k], v, rtol=1e-5, atol=1e-6)
