"""Binding of the FuXi forecaster (``fuxiops.models.forecaster_net.ForecastModule``) to the pruning code.

Units:

* per Swin block ``i``: ``blocks.i.heads`` (attention heads; a head owns its
  rows of the fused qkv projection, its columns of the output projection, its
  logit scale and its output of the position-bias MLP) and ``blocks.i.mlp``
  (MLP hidden neurons in groups of ``mlp_group``);
* ``down.res`` and ``up.res``: the inner channels of the residual conv blocks
  of the down and up blocks, in GroupNorm groups (a group owns its output
  channels of the first 3x3 conv, its GroupNorm affine pair and its input
  channels of the second conv). Whole groups go, so the normalisation of the
  kept channels is unchanged.

The residual streams themselves (``embed_dim``, ``dim``) are shared by every
block and stay whole. Sub-networks, in forward order: ``down`` (embedding and
down block), groups of consecutive Swin blocks (``blocks.0-1``...), ``up`` (up
block and head). The pruned network is the same architecture with other
per-block head counts, MLP widths and residual inner widths
(:func:`fuxiops.models.presets.with_blocks`), loadable like any checkpoint.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from fuxiops.compression.pruning.base import PrunableNetwork
from fuxiops.compression.pruning.space import PruneUnit, PruningPlan, group_indices, group_l1, take
from fuxiops.errors import FuxiopsError


def _largest_divisor_at_most(n: int, cap: int) -> int:
    for d in range(min(n, cap), 0, -1):
        if n % d == 0:
            return d
    return 1


class ForecasterPruning(PrunableNetwork):
    """Prunes a ``ForecastModule`` (teacher) into smaller ``ForecastModule`` s."""

    def __init__(self, teacher: nn.Module, blocks_per_group: int = 2, mlp_groups: int = 8) -> None:
        from fuxiops.models.forecaster_net import ForecastModule

        if not isinstance(teacher, ForecastModule):
            raise FuxiopsError(f"pruning needs a torch ForecastModule, got {type(teacher).__name__}")
        if blocks_per_group < 1:
            raise FuxiopsError("blocks_per_group must be >= 1")
        self.teacher = teacher.eval()
        self.arch = teacher.arch
        self.blocks_per_group = blocks_per_group
        depth = self.arch.depth
        self._groups = [list(range(i, min(i + blocks_per_group, depth))) for i in range(0, depth, blocks_per_group)]
        units: list[PruneUnit] = []
        self._mlp_group: dict[int, int] = {}
        # Residual conv blocks: (module path, inner width, GroupNorm group size).
        self._conv = {"down": ("down", self.arch.down_hidden, self.arch.dim // self.arch.groups),
                      "up": ("up", self.arch.up_hidden, self.arch.embed_dim // self.arch.groups)}
        units.append(PruneUnit("down.res", "down", "channels", self._conv["down"][1] // self._conv["down"][2],
                               self._conv["down"][2]))
        for g in self._groups:
            sub = f"blocks.{g[0]}-{g[-1]}" if len(g) > 1 else f"blocks.{g[0]}"
            for i in g:
                h, m = self.arch.heads[i], self.arch.mlp_hidden[i]
                n_groups = _largest_divisor_at_most(m, mlp_groups)
                self._mlp_group[i] = m // n_groups
                units.append(PruneUnit(f"blocks.{i}.heads", sub, "heads", h, 1))
                units.append(PruneUnit(f"blocks.{i}.mlp", sub, "mlp", n_groups, m // n_groups))
        units.append(PruneUnit("up.res", "up", "channels", self._conv["up"][1] // self._conv["up"][2],
                               self._conv["up"][2]))
        self._units = units
        self._stage_names = super().subnets  # down, blocks.0-1, ..., up (forward order of the units)

    @property
    def units(self) -> list[PruneUnit]:
        return list(self._units)

    # -- importance ----------------------------------------------------------------------------------
    def importance(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i, blk in enumerate(self.teacher.net.blocks):
            h = blk.attn.heads
            qkv = group_l1(blk.attn.qkv.weight, 0, h, outer=3)
            proj = group_l1(blk.attn.proj.weight, 1, h)
            out[f"blocks.{i}.heads"] = qkv + proj
            n = self.arch.mlp_hidden[i] // self._mlp_group[i]
            fc1 = group_l1(blk.mlp[0].weight, 0, n)
            fc2 = group_l1(blk.mlp[2].weight, 1, n)
            out[f"blocks.{i}.mlp"] = fc1 + fc2
        for name, (path, hidden, per) in self._conv.items():
            res = getattr(self.teacher.net, path).res
            n = hidden // per
            out[f"{name}.res"] = group_l1(res.conv1.conv.weight, 0, n) + group_l1(res.conv2.conv.weight, 1, n)
        return out

    # -- physical pruning ----------------------------------------------------------------------------
    def pruned_arch(self, plan: PruningPlan) -> Any:
        from fuxiops.models.presets import with_blocks

        heads, mlp = [], []
        units = {u.name: u for u in self._units}
        for i in range(self.arch.depth):
            heads.append(len(plan.kept(units[f"blocks.{i}.heads"])))
            mlp.append(len(plan.kept(units[f"blocks.{i}.mlp"])) * self._mlp_group[i])
        res = tuple(len(plan.kept(units[f"{k}.res"])) * self._conv[k][2] for k in ("down", "up"))
        return with_blocks(self.arch, tuple(heads), tuple(mlp), res_hidden=res)

    def apply(self, plan: PruningPlan) -> nn.Module:
        from fuxiops.models.forecaster_net import ForecastModule

        t = self.teacher
        arch = self.pruned_arch(plan)
        model = ForecastModule(arch, t.n_state, t.n_diag, t.static, n_clock=t.net.n_cond - t.static.shape[0])
        sd = {k: v.clone() for k, v in t.state_dict().items()}
        units = {u.name: u for u in self._units}
        hd = self.arch.head_dim
        for i in range(self.arch.depth):
            p = f"net.blocks.{i}."
            hu = units[f"blocks.{i}.heads"]
            keep_h = plan.kept(hu)
            if len(keep_h) < hu.full:
                rows = group_indices(keep_h, 1, hu.full, outer=3, inner=hd)
                cols = group_indices(keep_h, 1, hu.full, inner=hd)
                heads = torch.as_tensor(keep_h, dtype=torch.long)
                sd[p + "attn.qkv.weight"] = take(sd[p + "attn.qkv.weight"], 0, rows)
                sd[p + "attn.qkv.bias"] = take(sd[p + "attn.qkv.bias"], 0, rows)
                sd[p + "attn.proj.weight"] = take(sd[p + "attn.proj.weight"], 1, cols)
                sd[p + "attn.logit_scale"] = take(sd[p + "attn.logit_scale"], 0, heads)
                sd[p + "attn.cpb.2.weight"] = take(sd[p + "attn.cpb.2.weight"], 0, heads)
            mu = units[f"blocks.{i}.mlp"]
            keep_m = plan.kept(mu)
            if len(keep_m) < mu.full:
                idx = group_indices(keep_m, mu.group, mu.full)
                sd[p + "mlp.0.weight"] = take(sd[p + "mlp.0.weight"], 0, idx)
                sd[p + "mlp.0.bias"] = take(sd[p + "mlp.0.bias"], 0, idx)
                sd[p + "mlp.2.weight"] = take(sd[p + "mlp.2.weight"], 1, idx)
        for name, (path, _, per) in self._conv.items():
            cu = units[f"{name}.res"]
            keep_c = plan.kept(cu)
            if len(keep_c) < cu.full:
                idx = group_indices(keep_c, per, cu.full)
                p = f"net.{path}.res."
                for k in ("conv1.conv.weight", "conv1.conv.bias", "norm2.weight", "norm2.bias"):
                    sd[p + k] = take(sd[p + k], 0, idx)
                sd[p + "conv2.conv.weight"] = take(sd[p + "conv2.conv.weight"], 1, idx)
        try:
            model.load_state_dict(sd)
        except RuntimeError as e:  # a layout this binding does not know: say so rather than guess
            raise FuxiopsError(f"pruned weights do not fit the pruned architecture (has the forecaster "
                               f"layout changed?): {e}") from None
        return model.eval()

    # -- stages (for feature errors and cross-network constraint training) ----------------------------
    def output(self, model: nn.Module, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return model.forward_normalised(*inputs)  # type: ignore[operator]

    @property
    def subnets(self) -> list[str]:
        return list(self._stage_names)

    def run_stage(self, model: nn.Module, index: int, inputs: Sequence[torch.Tensor], entry: Any) -> Any:
        """Stage 0 (``down``): inputs -> (embedding, tokens); Swin groups: tokens -> tokens; last
        (``up``): (embedding, tokens) -> the normalised output."""
        net = model.net  # type: ignore[attr-defined]
        if index == 0:
            if entry is not None:
                raise FuxiopsError("the first stage starts from the network inputs")
            x, clock = inputs
            xn = (x - model.mean[:, None, None]) / model.std[:, None, None]  # type: ignore[attr-defined]
            return net.encode(xn, model.cond(clock))  # type: ignore[operator]
        if entry is None:
            raise FuxiopsError(f"stage {index} needs the features of stage {index - 1}")
        e, h = entry
        if index == len(self._stage_names) - 1:
            return net.decode(e, h)
        for i in self._groups[index - 1]:
            h = net.blocks[i](h)
        return e, h

    def stage_forward(self, model: nn.Module, inputs: Sequence[torch.Tensor]) -> list[Any]:
        feats: list[Any] = []
        entry = None
        for s in range(len(self._stage_names)):
            entry = self.run_stage(model, s, inputs, entry)
            feats.append(entry)
        feats.append(feats[-1])  # the output is the last stage's exit
        return feats

    def stage_parameters(self, model: nn.Module, index: int) -> list[nn.Parameter]:
        net = model.net  # type: ignore[attr-defined]
        if index == 0:
            return list(net.down.parameters())
        if index == len(self._stage_names) - 1:
            return [*net.up.parameters(), *net.head.parameters()]
        return [p for i in self._groups[index - 1] for p in net.blocks[i].parameters()]

    @staticmethod
    def feature_error(a: Any, b: Any) -> torch.Tensor:
        # Tokens for the inner stages (the embedding passes through them unchanged), the output last.
        if isinstance(a, torch.Tensor):
            return torch.mean((a - b) ** 2)
        return torch.mean((a[1] - b[1]) ** 2)
