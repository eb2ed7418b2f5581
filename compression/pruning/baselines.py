"""Pruning baselines at a given FLOP budget, on the same units as EMO-PMS.

* **L1-magnitude** (global): every group of every unit (heads, MLP groups,
  conv channel groups) is scored by the L1 norm of the weights it owns per
  FLOP it costs (so units of different kinds and resolutions compare); the
  lowest-scoring groups are removed one by one until the budget is met.
* **Uniform**: every unit keeps the same fraction of its groups; the largest
  fraction within the budget is found by bisection.
* **Whole-network NSGA-II**: one search over all units at once, with the
  same number of evaluations as the decomposed search; the front's lowest
  error within the budget is taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from fuxiops.compression.nsga import SearchResult, nsga2
from fuxiops.compression.pruning.emo_pms import Evaluator
from fuxiops.errors import FuxiopsError


@dataclass
class BaselineResult:
    """A pruned network from a baseline, with its counts, FLOPs and error before any training."""

    method: str
    model: nn.Module
    counts: dict[str, int]
    flops: float
    error: float
    search: SearchResult | None = None


def _budget(ev: Evaluator, flops_budget: float) -> float:
    return flops_budget * ev.teacher_flops if flops_budget <= 1.0 else float(flops_budget)


def magnitude_prune(ev: Evaluator, flops_budget: float) -> BaselineResult:
    """Global L1-magnitude structured pruning down to ``flops_budget``."""
    budget = _budget(ev, flops_budget)
    units = ev.net.units
    counts = {u.name: u.full for u in units}
    removed: dict[str, set[int]] = {u.name: set() for u in units}
    # L1 per FLOP of the group: comparable across unit kinds and the resolutions they run at.
    per_weight = {u.name: max(ev.slopes[u.name], 1.0) for u in units}
    scores = [(float(s) / per_weight[u.name], u.name, g) for u in units
              for g, s in enumerate(ev.importance[u.name])]
    scores.sort()
    by_name = {u.name: u for u in units}
    for _, name, g in scores:
        if ev.flops(counts) <= budget:
            break
        if counts[name] <= by_name[name].min_keep:
            continue
        counts[name] -= 1
        removed[name].add(g)
    if ev.flops(counts) > budget:
        raise FuxiopsError(f"magnitude pruning cannot reach {budget:.3g} FLOPs with these units")
    # The removed groups are exactly the lowest-scoring ones of each unit, which is what plan() keeps out.
    f, e, model = ev.measure(counts)
    return BaselineResult("magnitude", model, counts, f, e)


def uniform_prune(ev: Evaluator, flops_budget: float) -> BaselineResult:
    """Keep the same fraction of every unit, the largest one within ``flops_budget``."""
    budget = _budget(ev, flops_budget)
    units = ev.net.units

    def counts_at(r: float) -> dict[str, int]:
        return {u.name: int(min(u.full, max(u.min_keep, int(np.floor(r * u.full + 1e-9))))) for u in units}

    if ev.flops(counts_at(0.0)) > budget:
        raise FuxiopsError(f"uniform pruning cannot reach {budget:.3g} FLOPs with these units")
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if ev.flops(counts_at(mid)) <= budget:
            lo = mid
        else:
            hi = mid
    counts = counts_at(lo)
    f, e, model = ev.measure(counts)
    return BaselineResult("uniform", model, counts, f, e)


def whole_network_search(ev: Evaluator, flops_budget: float, max_evaluations: int, pop_size: int = 12,
                         seed: int = 0, search: SearchResult | None = None) -> BaselineResult:
    """NSGA-II over all units at once, ``max_evaluations`` distinct networks evaluated; the front's
    lowest error within the budget is taken. ``search`` reuses an earlier run (the front does not depend
    on the budget), so one search serves several budgets."""
    budget = _budget(ev, flops_budget)
    units = ev.net.units
    low = [u.min_keep for u in units]
    high = [u.full for u in units]

    def evaluate(x: tuple[int, ...]) -> tuple[float, float]:
        f, e, _ = ev.measure({u.name: int(v) for u, v in zip(units, x)})
        return f, e

    res = search or nsga2(evaluate, low, high, pop_size=pop_size, seed=seed, seeds=[high],
                          max_evaluations=max_evaluations)
    ok = res.front_f[:, 0] <= budget * 1.0001
    if not ok.any():
        raise FuxiopsError(f"whole-network NSGA-II found nothing within {budget:.3g} FLOPs in "
                           f"{res.n_evaluations} evaluations")
    i = int(np.flatnonzero(ok)[np.argmin(res.front_f[ok, 1])])
    counts = {u.name: int(v) for u, v in zip(units, res.front_x[i])}
    f, e, model = ev.measure(counts)
    return BaselineResult("whole-nsga2", model, counts, f, e, search=res)
