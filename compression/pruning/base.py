"""What the pruning methods need from a network: its units, sub-networks, stages and a way to shrink it.

A :class:`PrunableNetwork` binds one architecture (the FuXi forecaster, see
``fuxiops.compression.pruning.forecaster``) to the architecture-independent
search code of EMO-PMS and the baselines.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from fuxiops.compression.pruning.space import PruneUnit, PruningPlan


class PrunableNetwork(ABC):
    """An unpruned network (the teacher) together with the knowledge to prune it physically."""

    teacher: nn.Module

    @property
    @abstractmethod
    def units(self) -> list[PruneUnit]:
        """All structured choices, in forward order."""

    @property
    def subnets(self) -> list[str]:
        """Sub-network names in forward order (each unit belongs to one)."""
        out: list[str] = []
        for u in self.units:
            if u.subnet not in out:
                out.append(u.subnet)
        return out

    def units_of(self, subnet: str) -> list[PruneUnit]:
        return [u for u in self.units if u.subnet == subnet]

    @abstractmethod
    def importance(self) -> dict[str, np.ndarray]:
        """Per unit, an L1-magnitude score per group (higher = keep first)."""

    @abstractmethod
    def apply(self, plan: PruningPlan) -> nn.Module:
        """A new, physically smaller network keeping the plan's groups (weights copied from the teacher)."""

    def output(self, model: nn.Module, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The output errors are measured on (normalised units for the forecaster)."""
        return model(*inputs)

    @abstractmethod
    def stage_forward(self, model: nn.Module, inputs: Sequence[torch.Tensor]) -> list[Any]:
        """Features at the exit of each sub-network, in ``subnets`` order, then the output last."""

    @abstractmethod
    def run_stage(self, model: nn.Module, index: int, inputs: Sequence[torch.Tensor], entry: Any) -> Any:
        """Run sub-network ``index`` of ``model`` on ``entry`` (the previous stage's exit features,
        or None for the first) and return its exit features."""

    @abstractmethod
    def stage_parameters(self, model: nn.Module, index: int) -> list[nn.Parameter]:
        """Parameters of sub-network ``index`` of ``model``."""

    @staticmethod
    def feature_error(a: Any, b: Any) -> torch.Tensor:
        """Mean squared difference between two features (tensors or tuples of tensors)."""
        if isinstance(a, torch.Tensor):
            return torch.mean((a - b) ** 2)
        return sum((torch.mean((x - y) ** 2) for x, y in zip(a, b)), torch.zeros(()))
