"""The structured pruning space: units (heads of a block, MLP width, conv channel groups) and plans.

A *unit* is one structured choice: how many of ``full`` groups to keep (an
attention block's heads, an MLP's hidden width in groups of ``group``
neurons, a convolution's output channels in groups). A *plan* says, per unit,
which groups are kept. Groups are chosen by importance (L1 magnitude of the
weights that the group owns), so a search only decides *how many* to keep.
Slicing helpers remove the corresponding rows/columns from weight tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from fuxiops.errors import FuxiopsError


@dataclass(frozen=True)
class PruneUnit:
    """One structured choice: keep ``min_keep..full`` of ``full`` groups of size ``group``."""

    name: str
    """Unique, e.g. ``blocks.3.heads`` or ``blocks.3.mlp`` or ``down.channels``."""
    subnet: str
    """The sub-network it belongs to (``embed``, ``blocks.0-3``, ``up``...)."""
    kind: str
    """``heads``, ``mlp`` or ``channels``."""
    full: int
    """Number of groups in the unpruned network."""
    group: int = 1
    """Neurons/channels per group (1 for heads: a head is a group)."""
    min_keep: int = 1


@dataclass
class PruningPlan:
    """Kept group indices per unit (units not listed are kept whole)."""

    keep: dict[str, list[int]] = field(default_factory=dict)

    def kept(self, unit: PruneUnit) -> list[int]:
        return sorted(self.keep.get(unit.name, range(unit.full)))

    def counts(self, units: Sequence[PruneUnit]) -> dict[str, int]:
        return {u.name: len(self.kept(u)) for u in units}

    def merged(self, other: "PruningPlan") -> "PruningPlan":
        return PruningPlan({**self.keep, **other.keep})

    def to_dict(self) -> dict[str, list[int]]:
        return {k: list(map(int, v)) for k, v in sorted(self.keep.items())}


def plan_from_counts(units: Sequence[PruneUnit], counts: Mapping[str, int],
                     importance: Mapping[str, np.ndarray]) -> PruningPlan:
    """Keep the ``counts[unit]`` most important groups of each unit (all groups for unlisted units)."""
    keep: dict[str, list[int]] = {}
    for u in units:
        if u.name not in counts:
            continue
        n = int(counts[u.name])
        if not u.min_keep <= n <= u.full:
            raise FuxiopsError(f"unit {u.name}: cannot keep {n} of {u.full} groups (allowed {u.min_keep}..{u.full})")
        score = np.asarray(importance[u.name], dtype=np.float64)
        # Stable sort on -score so equal importances keep the lower index first (deterministic).
        order = np.argsort(-score, kind="stable")[:n]
        keep[u.name] = sorted(int(i) for i in order)
    return PruningPlan(keep)


def group_indices(keep: Sequence[int], group: int, n_groups: int, outer: int = 1, inner: int = 1) -> torch.Tensor:
    """Flat indices of kept groups in a dim laid out as (outer, n_groups, group * inner).

    E.g. a fused qkv projection has rows (3, heads, head_dim): ``outer=3``,
    ``group=1`` (one head per group), ``inner=head_dim``.
    """
    span = group * inner
    idx = [o * n_groups * span + g * span + j for o in range(outer) for g in keep for j in range(span)]
    return torch.as_tensor(idx, dtype=torch.long)


def take(t: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """``t`` restricted to ``index`` along ``dim`` (a contiguous copy)."""
    if index.numel() and int(index.max()) >= t.shape[dim]:
        raise FuxiopsError(f"pruning index {int(index.max())} out of range for dim {dim} of shape {tuple(t.shape)}")
    return t.index_select(dim, index).contiguous()


def group_l1(t: torch.Tensor, dim: int, n_groups: int, outer: int = 1) -> np.ndarray:
    """L1 norm of each of ``n_groups`` groups of ``t`` along ``dim`` laid out as (outer, n_groups, rest)."""
    moved = t.detach().abs().movedim(dim, 0)
    size = moved.shape[0]
    if size % (outer * n_groups):
        raise FuxiopsError(f"dim of size {size} does not split into {outer} x {n_groups} groups")
    per = moved.reshape(outer, n_groups, -1)
    return per.sum(dim=(0, 2)).double().numpy()
