"""EMO-PMS: evolutionary multi-objective pruning by sub-networks (Shang, Zhu et al. 2023), for the forecaster.

1. **Decomposed search.** The network is split into sub-networks (embedding /
   down, groups of Swin blocks, up / head). For each, NSGA-II searches how
   many heads / MLP groups / channel groups each of its units keeps,
   minimising (FLOPs, feature-processing error). The error is measured
   through the frozen rest of the teacher: only that sub-network is pruned
   and the network's output is compared with the teacher's (latitude-weighted
   MSE in normalised units), so the teacher acts as the feature selector.
2. **Global performance-impairment ranking.** One Pareto solution per
   sub-network is combined under a global FLOP budget: FLOP savings of
   disjoint sub-networks add up, so the combinations whose summed impairment
   is lowest within the budget are ranked (multiple-choice knapsack), the
   best few are measured for real and the best measured one is taken.
3. **Cross-network constraint training.** The combined pruned network is
   trained sub-network by sub-network, in forward order: each pruned
   sub-network takes the output of the previous *pruned* sub-network and
   learns to reproduce the teacher's features at its exit.
4. Heads and channels are physically removed (``PrunableNetwork.apply``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from fuxiops.compression.flops import count_flops
from fuxiops.compression.losses import lat_weighted_mse
from fuxiops.compression.nsga import SearchResult, nsga2
from fuxiops.compression.pruning.base import PrunableNetwork
from fuxiops.compression.pruning.space import PruneUnit, PruningPlan, plan_from_counts
from fuxiops.errors import FuxiopsError
from fuxiops.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class EmoPmsConfig:
    """Search and training budgets."""

    pop_size: int = 12
    n_gen: int = 6
    top_k: int = 4
    """Combinations measured for real after the impairment ranking."""
    constraint_steps: int = 50
    """Cross-network constraint training steps per sub-network (0 = none)."""
    lr: float = 5e-4
    seed: int = 0


@dataclass
class Evaluator:
    """Measures (FLOPs, output error vs teacher) of pruned variants on fixed calibration inputs.

    FLOPs of the structured units (linear layers and attention) are affine in
    the kept counts, so they are calibrated once per unit (one pruned network
    each, counted by :func:`count_flops`) and then computed exactly without
    running the FLOP counter for every candidate; :meth:`exact_flops` re-counts.
    """

    net: PrunableNetwork
    inputs: Sequence[torch.Tensor]
    importance: dict[str, np.ndarray] = field(default_factory=dict)
    teacher_out: torch.Tensor | None = None
    teacher_flops: int = 0
    n_evaluations: int = 0
    slopes: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.importance:
            self.importance = self.net.importance()
        with torch.no_grad():
            self.teacher_out = self.net.output(self.net.teacher.eval(), self.inputs)
        self.teacher_flops = count_flops(self.net.teacher, self.inputs)
        for u in self.net.units:
            if u.full == u.min_keep:
                self.slopes[u.name] = 0.0
                continue
            small = self.net.apply(self.plan({u.name: u.min_keep}))
            self.slopes[u.name] = (self.teacher_flops - count_flops(small, self.inputs)) / (u.full - u.min_keep)

    def plan(self, counts: dict[str, int]) -> PruningPlan:
        return plan_from_counts(self.net.units, counts, self.importance)

    def flops(self, counts: dict[str, int]) -> float:
        """FLOPs per forward call of the network pruned by ``counts`` (affine model, exact for these layers)."""
        full = {u.name: u.full for u in self.net.units}
        return float(self.teacher_flops - sum(self.slopes[k] * (full[k] - v) for k, v in counts.items()))

    def exact_flops(self, model: nn.Module) -> float:
        return float(count_flops(model, self.inputs))

    @torch.no_grad()
    def measure(self, counts: dict[str, int]) -> tuple[float, float, nn.Module]:
        """FLOPs and lat-weighted MSE to the teacher output of the network pruned by ``counts``."""
        self.n_evaluations += 1
        model = self.net.apply(self.plan(counts)).eval()
        err = float(lat_weighted_mse(self.net.output(model, self.inputs), self.teacher_out))
        return self.flops(counts), err, model


@dataclass
class SubnetFront:
    """The Pareto front of one sub-network: unit counts, FLOPs of the whole network, error."""

    subnet: str
    units: list[PruneUnit]
    counts: list[dict[str, int]]
    flops: list[float]
    errors: list[float]
    search: SearchResult


def search_subnet(ev: Evaluator, subnet: str, cfg: EmoPmsConfig, max_evaluations: int | None = None
                  ) -> SubnetFront:
    """NSGA-II over the units of one sub-network, the rest of the network left as the teacher."""
    units = ev.net.units_of(subnet)
    low = [u.min_keep for u in units]
    high = [u.full for u in units]

    def evaluate(x: tuple[int, ...]) -> tuple[float, float]:
        f, e, _ = ev.measure({u.name: int(v) for u, v in zip(units, x)})
        return f, e

    res = nsga2(evaluate, low, high, pop_size=cfg.pop_size, n_gen=cfg.n_gen, seed=cfg.seed, seeds=[high],
                max_evaluations=max_evaluations)
    counts = [{u.name: int(v) for u, v in zip(units, x)} for x in res.front_x]
    return SubnetFront(subnet, units, counts, res.front_f[:, 0].tolist(), res.front_f[:, 1].tolist(), res)


def rank_combinations(fronts: Sequence[SubnetFront], teacher_flops: float, budget: float, top_k: int
                      ) -> list[tuple[float, float, dict[str, int]]]:
    """Combinations (one front point per sub-network) within ``budget`` FLOPs, lowest summed impairment first.

    Each point saves ``teacher_flops - flops`` and costs its measured error; the
    savings of disjoint sub-networks add up. Returns (predicted flops, summed
    error, counts) for the ``top_k`` best.
    """
    options = [[(teacher_flops - f, e, c) for f, e, c in zip(fr.flops, fr.errors, fr.counts)] for fr in fronts]
    need = teacher_flops - budget
    n_combos = int(np.prod([len(o) for o in options]))
    found: list[tuple[float, float, dict[str, int]]] = []
    if n_combos <= 200_000:
        for combo in itertools.product(*options):
            saved = sum(s for s, _, _ in combo)
            if saved + 1e-9 >= need:
                err = sum(e for _, e, _ in combo)
                counts: dict[str, int] = {}
                for _, _, c in combo:
                    counts.update(c)
                found.append((teacher_flops - saved, err, counts))
    else:
        # Greedy: walk down each front, always taking the step with the least error per FLOP saved.
        pos = [int(np.argmin([s for s, _, _ in o])) for o in options]
        while True:
            saved = sum(options[i][p][0] for i, p in enumerate(pos))
            if saved >= need:
                break
            best, best_rate = None, np.inf
            for i, o in enumerate(options):
                cur = o[pos[i]]
                for j, cand in enumerate(o):
                    if cand[0] > cur[0]:
                        rate = (cand[1] - cur[1]) / (cand[0] - cur[0])
                        if rate < best_rate:
                            best, best_rate = (i, j), rate
            if best is None:
                break
            pos[best[0]] = best[1]
        counts = {}
        for i, p in enumerate(pos):
            counts.update(options[i][p][2])
        saved = sum(options[i][p][0] for i, p in enumerate(pos))
        if saved >= need:
            found.append((teacher_flops - saved, sum(options[i][p][1] for i, p in enumerate(pos)), counts))
    found.sort(key=lambda t: t[1])
    return found[:top_k]


def search_fronts(ev: Evaluator, cfg: EmoPmsConfig, progress: bool = False) -> list[SubnetFront]:
    """The decomposed search: one NSGA-II front per sub-network, in forward order."""
    subnets = ev.net.subnets
    it: Any = subnets
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(subnets, desc="EMO-PMS sub-network search", unit="subnet")
    return [search_subnet(ev, s, cfg) for s in it]


@dataclass
class EmoPmsResult:
    """The pruned network and how it was found."""

    model: nn.Module
    plan: PruningPlan
    counts: dict[str, int]
    flops: float
    teacher_flops: float
    error_before_training: float
    error_after_training: float
    fronts: list[SubnetFront]
    n_evaluations: int
    history: list[dict[str, float]] = field(default_factory=list)


def constraint_training(net: PrunableNetwork, model: nn.Module, batches: Callable[[int], Sequence[torch.Tensor]],
                        steps: int, lr: float = 5e-4, progress: bool = False,
                        teacher_memo: dict[int, list[Any]] | None = None) -> list[dict[str, float]]:
    """Cross-network constraint training: each pruned sub-network, fed by the previous pruned ones,
    learns to reproduce the teacher's features at its exit (MSE). Trains ``model`` in place.

    The teacher's features of a step's batch are computed once for all stages; ``teacher_memo`` (keyed
    by step, valid for one ``batches``) shares them between several pruned networks."""
    memo: dict[int, list[Any]] = teacher_memo if teacher_memo is not None else {}
    history: list[dict[str, float]] = []
    if steps <= 0:
        return history
    n_stages = len(net.subnets)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps * n_stages, desc="constraint training", unit="step")
    for s in range(n_stages):
        params = net.stage_parameters(model, s)
        if not params:
            continue
        opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
        for step in range(steps):
            inputs = batches(step)
            with torch.no_grad():
                if step not in memo:
                    memo[step] = net.stage_forward(net.teacher, inputs)
                target = memo[step][s]
                entry = None
                for k in range(s):  # the previous *pruned* sub-networks feed this one
                    entry = net.run_stage(model, k, inputs, entry)
            model.train()
            out = net.run_stage(model, s, inputs, entry)
            loss = net.feature_error(out, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append({"stage": s, "step": step, "loss": float(loss.detach())})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(stage=net.subnets[s], loss=f"{history[-1]['loss']:.3e}")
    if bar is not None:
        bar.close()
    model.eval()
    return history


def emo_pms(net: PrunableNetwork, calib: Sequence[torch.Tensor], flops_budget: float,
            cfg: EmoPmsConfig = EmoPmsConfig(), batches: Callable[[int], Sequence[torch.Tensor]] | None = None,
            progress: bool = True, evaluator: Evaluator | None = None,
            fronts: Sequence[SubnetFront] | None = None) -> EmoPmsResult:
    """Prune ``net.teacher`` to at most ``flops_budget`` FLOPs per step (absolute, or a fraction <= 1
    of the teacher's). ``calib`` are the inputs used to measure errors; ``batches(step)`` feeds
    constraint training (default: ``calib``). ``fronts`` (from :func:`search_fronts` or an earlier
    result) skips the sub-network searches: they do not depend on the budget."""
    ev = evaluator or Evaluator(net, calib)
    budget = flops_budget * ev.teacher_flops if flops_budget <= 1.0 else float(flops_budget)
    fronts = list(fronts) if fronts is not None else search_fronts(ev, cfg, progress)
    ranked = rank_combinations(fronts, ev.teacher_flops, budget, cfg.top_k)
    if not ranked:
        min_flops = ev.teacher_flops - sum(ev.teacher_flops - min(fr.flops) for fr in fronts)
        raise FuxiopsError(f"no combination of sub-network solutions reaches {budget:.3g} FLOPs; the smallest "
                           f"found has {min_flops:.3g} ({min_flops / ev.teacher_flops:.1%} of the teacher)")
    best: tuple[float, float, dict[str, int], nn.Module] | None = None
    for _, _, counts in ranked:
        f, e, model = ev.measure(counts)
        if f <= budget * 1.0001 and (best is None or e < best[1]):
            best = (f, e, counts, model)
    if best is None:  # predicted within budget but measured above (should not happen: FLOPs are additive)
        raise FuxiopsError("the ranked combinations exceed the FLOP budget when measured")
    flops, err0, counts, model = best
    feed = batches or (lambda step: calib)
    history = constraint_training(net, model, feed, cfg.constraint_steps, cfg.lr, progress)
    with torch.no_grad():
        err1 = float(lat_weighted_mse(net.output(model.eval(), calib), ev.teacher_out))
    return EmoPmsResult(model=model, plan=ev.plan(counts), counts=counts, flops=flops,
                        teacher_flops=ev.teacher_flops, error_before_training=err0, error_after_training=err1,
                        fronts=fronts, n_evaluations=ev.n_evaluations, history=history)
