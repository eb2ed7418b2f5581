"""Parameter and FLOP counts of networks, measured by running them once.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls,
convolutions and attention, 2 FLOPs per multiply-add), on the real input shape,
so a pruned network's count reflects what was physically removed.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """Number of parameters (all, trainable or not)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, inputs: Sequence[torch.Tensor]) -> int:
    """FLOPs of one forward call ``model(*inputs)``."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(*inputs)
    model.train(was_training)
    return int(counter.get_total_flops())
