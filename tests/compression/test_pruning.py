"""Pruning: NSGA-II fronts, physical shrinking, EMO-PMS and baselines on a tiny forecaster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fuxiops.compression.flops import count_flops, count_params
from fuxiops.compression.nsga import hypervolume, non_dominated, nsga2
from fuxiops.compression.prune import prune_checkpoint
from fuxiops.compression.pruning.baselines import magnitude_prune, uniform_prune, whole_network_search
from fuxiops.compression.pruning.emo_pms import EmoPmsConfig, Evaluator, emo_pms, rank_combinations
from fuxiops.compression.pruning.forecaster import ForecasterPruning
from fuxiops.compression.pruning.space import PruningPlan
from fuxiops.errors import FuxiopsError
from fuxiops.models.base import load_forecaster

from .conftest import initial_state, tiny_forecaster


def test_nsga2_returns_non_dominated_front() -> None:
    def ev(x: tuple[int, ...]) -> tuple[float, float]:
        return float(sum(x)), float(sum((5 - v) ** 2 for v in x))

    res = nsga2(ev, [0, 0, 0], [5, 5, 5], pop_size=10, n_gen=6, seed=1, seeds=[(5, 5, 5)])
    assert non_dominated(res.front_f).all()
    # Every evaluated point is dominated by or equal to some front point.
    all_f = np.array([f for _, f in res.evaluations])
    for f in all_f:
        assert np.any(np.all(res.front_f <= f, axis=1))
    assert res.front_f[-1, 1] == 0.0  # the "keep all" seed is on the front
    assert len(res.front_f) >= 5
    assert hypervolume(res.front_f, (16, 76)) > 0
    budget = nsga2(ev, [0, 0, 0], [5, 5, 5], pop_size=10, max_evaluations=25, seed=1)
    assert budget.n_evaluations == 25


def test_non_dominated_mask() -> None:
    f = np.array([[1, 5], [2, 2], [3, 3], [5, 1], [2, 2.5]])
    assert non_dominated(f).tolist() == [True, True, False, True, False]


@pytest.fixture(scope="module")
def net() -> ForecasterPruning:
    return ForecasterPruning(tiny_forecaster(0).module, blocks_per_group=2)


@pytest.fixture(scope="module")
def calib() -> tuple[torch.Tensor, torch.Tensor]:
    from fuxiops.compression.export import forecaster_example_inputs
    return forecaster_example_inputs(tiny_forecaster(0), seed=2, batch=2)


def test_physical_pruning_shrinks_and_keeps_kept_weights(net: ForecasterPruning, calib) -> None:
    imp = net.importance()
    keep_heads = [int(np.argmax(imp["blocks.1.heads"]))]
    plan = PruningPlan({"blocks.1.heads": keep_heads, "blocks.2.mlp": [0, 3, 5]})
    small = net.apply(plan)
    assert small.arch.heads == (2, 1, 2, 2)
    assert small.arch.mlp_hidden == (64, 64, 24, 64)
    assert count_params(small) < count_params(net.teacher)
    assert count_flops(small, calib) < count_flops(net.teacher, calib)
    # Kept rows are the teacher's rows: head h of block 1 -> its q, k and v slices.
    hd = net.arch.head_dim
    h = keep_heads[0]
    tq = net.teacher.net.blocks[1].attn.qkv.weight
    sq = small.net.blocks[1].attn.qkv.weight
    for s in range(3):
        assert torch.equal(sq[s * hd:(s + 1) * hd], tq[s * 2 * hd + h * hd: s * 2 * hd + (h + 1) * hd])
    # Keeping everything reproduces the teacher exactly.
    same = net.apply(PruningPlan())
    with torch.no_grad():
        assert torch.equal(same(*calib), net.teacher(*calib))


def test_pruned_checkpoint_loads_and_runs(teacher_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "pruned"
    rep = prune_checkpoint(teacher_ckpt, out, 0.9, method="emo-pms",
                           config=EmoPmsConfig(pop_size=6, n_gen=2, constraint_steps=2), progress=False)
    assert rep["flops_fraction"] <= 0.9 + 1e-6
    assert rep["params"] < rep["teacher_params"]
    fc = load_forecaster(out)
    assert fc.arch.heads == tuple(rep["heads"])
    states = list(fc.rollout(initial_state(1), 2))
    assert len(states) == 3 and np.isfinite(states[-1]["z"].values).all()
    assert "pruning" in fc.training


def test_emo_pms_and_baselines_meet_the_budget(net: ForecasterPruning, calib) -> None:
    ev = Evaluator(net, calib)
    cfg = EmoPmsConfig(pop_size=6, n_gen=2, constraint_steps=3)
    res = emo_pms(net, calib, 0.88, cfg, progress=False, evaluator=ev)
    assert res.flops <= 0.88 * ev.teacher_flops * 1.0001
    assert res.flops == pytest.approx(count_flops(res.model, calib))  # the affine FLOP model is exact
    assert res.error_after_training <= res.error_before_training + 1e-9
    for fr in res.fronts:
        assert non_dominated(np.c_[fr.flops, fr.errors]).all()
    kinds = {u.name: u.kind for u in net.units}
    assert {"heads", "mlp", "channels"} <= set(kinds.values())
    for b in (magnitude_prune(ev, 0.88), uniform_prune(ev, 0.88),
              whole_network_search(ev, 0.88, max_evaluations=12, pop_size=6)):
        assert b.flops <= 0.88 * ev.teacher_flops * 1.0001, b.method
        assert b.flops == pytest.approx(count_flops(b.model, calib)), b.method
        assert b.error > 0
        assert set(b.counts) == set(kinds), b.method  # every kind of structure is a choice of every method
    uni = uniform_prune(ev, 0.7)
    assert all(uni.counts[n] < u.full for n, u in ((u.name, u) for u in net.units) if u.kind == "channels")
    assert uni.model.arch.res_hidden != ()
    with pytest.raises(FuxiopsError, match="no combination"):
        rank_combinations(res.fronts, ev.teacher_flops, 0.01 * ev.teacher_flops, 3) or emo_pms(
            net, calib, 0.01, cfg, progress=False, evaluator=ev)


def test_rank_combinations_prefers_low_impairment() -> None:
    from fuxiops.compression.pruning.emo_pms import SubnetFront
    a = SubnetFront("a", [], [{"a": 2}, {"a": 1}], [100.0, 80.0], [0.0, 0.5], None)  # type: ignore[arg-type]
    b = SubnetFront("b", [], [{"b": 2}, {"b": 1}], [100.0, 80.0], [0.0, 0.1], None)  # type: ignore[arg-type]
    ranked = rank_combinations([a, b], 100.0, 85.0, 3)
    assert ranked[0][2] == {"a": 2, "b": 1}
    assert ranked[0][0] == pytest.approx(80.0)


def test_bad_prune_input(teacher_ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(FuxiopsError, match="unknown pruning method"):
        prune_checkpoint(teacher_ckpt, tmp_path / "x", 0.5, method="random")  # type: ignore[arg-type]
    with pytest.raises(FuxiopsError, match="FLOP budget"):
        prune_checkpoint(teacher_ckpt, tmp_path / "x", -1)
