"""NSGA-II over integer-coded structured pruning choices (pymoo), with evaluation accounting.

A search space is a list of integer genes (e.g. heads kept in block 3, MLP
width groups kept in block 3, channel groups kept in the down block), each in
``[low, high]``. Objectives are minimised; the usual pair is (FLOPs, feature
error). Every distinct genome is evaluated once (cached) and every evaluation
is logged with its index, so searches can be compared at equal evaluation
budgets and "evaluations needed to reach a front" can be measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from fuxiops.errors import FuxiopsError


@dataclass
class SearchResult:
    """Non-dominated genomes and their objectives, plus every evaluation in order."""

    front_x: np.ndarray
    """(n, n_var) integer genomes of the final non-dominated set (sorted by the first objective)."""
    front_f: np.ndarray
    """(n, n_obj) their objectives."""
    evaluations: list[tuple[tuple[int, ...], tuple[float, ...]]] = field(default_factory=list)
    """Every distinct evaluation, in the order it was made."""

    @property
    def n_evaluations(self) -> int:
        return len(self.evaluations)


def non_dominated(f: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``f`` (minimised objectives) that no other row dominates."""
    f = np.asarray(f, dtype=np.float64)
    n = len(f)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        if not mask[i]:
            continue
        dominated = np.all(f <= f[i], axis=1) & np.any(f < f[i], axis=1)
        if dominated.any():
            mask[i] = False
    return mask


def nsga2(evaluate: Callable[[tuple[int, ...]], Sequence[float]], low: Sequence[int], high: Sequence[int],
          pop_size: int = 16, n_gen: int = 10, seed: int = 0, seeds: Sequence[Sequence[int]] = (),
          max_evaluations: int | None = None) -> SearchResult:
    """Run pymoo's NSGA-II on integer genes ``low <= x <= high``; ``evaluate`` returns the objectives.

    ``seeds`` are genomes placed in the initial population (e.g. "keep
    everything", so the front always reaches the unpruned end).
    ``max_evaluations`` stops the search once that many distinct genomes were
    evaluated (used to give competing searches the same budget).
    """
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.optimize import minimize
    from pymoo.termination import get_termination

    low_a = np.asarray(low, dtype=np.int64)
    high_a = np.asarray(high, dtype=np.int64)
    if low_a.shape != high_a.shape or low_a.ndim != 1 or len(low_a) == 0:
        raise FuxiopsError("search space needs matching, non-empty lower and upper bounds")
    if np.any(low_a > high_a):
        raise FuxiopsError(f"search space has a lower bound above its upper bound: {low_a} > {high_a}")
    cache: dict[tuple[int, ...], tuple[float, ...]] = {}
    order: list[tuple[tuple[int, ...], tuple[float, ...]]] = []
    n_obj = None
    fixed = low_a == high_a

    def ev(x: np.ndarray) -> tuple[float, ...]:
        key = tuple(int(v) for v in np.clip(np.rint(x), low_a, high_a))
        if key not in cache:
            cache[key] = tuple(float(v) for v in evaluate(key))
            order.append((key, cache[key]))
        return cache[key]

    class _Problem(Problem):
        def _evaluate(self, x: np.ndarray, out: dict, *args: object, **kwargs: object) -> None:
            out["F"] = np.array([ev(row) for row in x])

    # pymoo needs xl < xu for its operators; fixed genes get a zero-width band handled by clipping.
    xu = np.where(fixed, high_a + 1, high_a)
    first = ev(low_a.astype(float) if not seeds else np.asarray(seeds[0], dtype=float))
    n_obj = len(first)
    problem = _Problem(n_var=len(low_a), n_obj=n_obj, xl=low_a, xu=xu, vtype=int)
    sampling: object = IntegerRandomSampling()
    if seeds:
        rng = np.random.default_rng(seed)
        init = rng.integers(low_a, high_a + 1, size=(pop_size, len(low_a)))
        for i, s in enumerate(seeds[:pop_size]):
            init[i] = np.asarray(s)
        sampling = init
    algo = NSGA2(pop_size=pop_size, sampling=sampling,
                 crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
                 mutation=PM(eta=20, vtype=float, repair=RoundingRepair()), eliminate_duplicates=True)
    if max_evaluations is not None:
        algo.setup(problem, termination=("n_gen", 10_000), seed=seed, verbose=False)
        while algo.has_next() and len(order) < max_evaluations:
            algo.next()
    else:
        minimize(problem, algo, get_termination("n_gen", n_gen), seed=seed, verbose=False)
    xs = np.array([k for k, _ in order], dtype=np.int64)
    fs = np.array([v for _, v in order], dtype=np.float64)
    if max_evaluations is not None:
        xs, fs = xs[:max_evaluations], fs[:max_evaluations]
        order = order[:max_evaluations]
    # The reported front is the non-dominated set of everything evaluated (the archive), which
    # is never worse than the final population's first front.
    mask = non_dominated(fs)
    fx, ff = xs[mask], fs[mask]
    # Deduplicate identical objective vectors, keep the first genome reaching them.
    _, uniq = np.unique(ff, axis=0, return_index=True)
    fx, ff = fx[np.sort(uniq)], ff[np.sort(uniq)]
    o = np.argsort(ff[:, 0])
    return SearchResult(front_x=fx[o], front_f=ff[o], evaluations=order)


def hypervolume(f: np.ndarray, ref: Sequence[float]) -> float:
    """2-objective hypervolume of points ``f`` (minimised) relative to the reference point ``ref``."""
    f = np.asarray(f, dtype=np.float64)
    f = f[np.all(f < np.asarray(ref), axis=1)]
    if len(f) == 0:
        return 0.0
    f = f[non_dominated(f)]
    f = f[np.argsort(f[:, 0])]
    hv, prev_y = 0.0, float(ref[1])
    for x, y in f:
        hv += (ref[0] - x) * (prev_y - y)
        prev_y = y
    return float(hv)
