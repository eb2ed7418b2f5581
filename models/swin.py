"""Swin Transformer V2 blocks on a periodic-in-longitude token grid.

Scaled cosine attention with a learnable per-head logit scale, a continuous
log-spaced relative position bias produced by a small MLP, residual post-norm,
and shifted windows. Shifting is a roll: in longitude the wrap-around is the
physical neighbour (no mask), in latitude it is not, so tokens from opposite
ends of the rows are masked from each other as in Swin.

Heads have a fixed width (``head_dim``) and each block's head count and MLP
width are free, so removing heads or MLP units (structured pruning) gives
another valid block.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _relative_coords_table(window: tuple[int, int]) -> torch.Tensor:
    """Log-spaced relative offsets ``((2wh-1)*(2ww-1), 2)`` in roughly [-1, 1] (Swin V2)."""
    wh, ww = window
    dh = torch.arange(-(wh - 1), wh, dtype=torch.float32)
    dw = torch.arange(-(ww - 1), ww, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(dh, dw, indexing="ij"), dim=-1)
    table[..., 0] /= max(wh - 1, 1)
    table[..., 1] /= max(ww - 1, 1)
    table *= 8.0
    table = torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8.0)
    return table.reshape(-1, 2)


def _relative_index(window: tuple[int, int]) -> torch.Tensor:
    """For each (query, key) pair in a window, the row of its offset in the coordinate table."""
    wh, ww = window
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :]
    rel = rel.permute(1, 2, 0)
    return ((rel[..., 0] + wh - 1) * (2 * ww - 1) + rel[..., 1] + ww - 1).reshape(-1)


class WindowAttention(nn.Module):
    """Scaled cosine multi-head attention inside windows, with continuous position bias."""

    def __init__(self, dim: int, heads: int, head_dim: int, window: tuple[int, int], cpb_hidden: int) -> None:
        super().__init__()
        self.heads, self.head_dim, self.window = heads, head_dim, window
        inner = heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner)
        self.proj = nn.Linear(inner, dim)
        # tau = exp(logit_scale) clamped at 100 (Swin V2); one per head so heads can be removed.
        self.logit_scale = nn.Parameter(torch.full((heads, 1, 1), math.log(10.0)))
        self.cpb = nn.Sequential(nn.Linear(2, cpb_hidden), nn.ReLU(), nn.Linear(cpb_hidden, heads, bias=False))
        self.register_buffer("coords_table", _relative_coords_table(window), persistent=False)
        self.register_buffer("rel_index", _relative_index(window), persistent=False)

    def position_bias(self) -> torch.Tensor:
        n = self.window[0] * self.window[1]
        bias = self.cpb(self.coords_table)[self.rel_index].reshape(n, n, self.heads).permute(2, 0, 1)
        return 16.0 * torch.sigmoid(bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x``: (windows*B, N, dim); ``mask``: (windows, N, N) additive or None."""
        bw, n, _ = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scale = torch.exp(torch.clamp(self.logit_scale, max=math.log(100.0)))
        q = F.normalize(q, dim=-1) * scale
        k = F.normalize(k, dim=-1)
        bias = self.position_bias()[None]  # (1, heads, N, N)
        if mask is not None:
            nw = mask.shape[0]
            bias = (bias + mask[:, None]).repeat(bw // nw, 1, 1, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.expand(bw, -1, -1, -1), scale=1.0)
        return self.proj(out.transpose(1, 2).reshape(bw, n, self.heads * self.head_dim))


class SwinBlock(nn.Module):
    """One Swin-V2 block (res-post-norm) on ``(B, H, W, dim)`` tokens; odd blocks shift windows."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_hidden: int, window: tuple[int, int],
                 shift: bool, cpb_hidden: int) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.attn = WindowAttention(dim, heads, head_dim, window, cpb_hidden)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_hidden), nn.GELU(), nn.Linear(mlp_hidden, dim))
        self.norm2 = nn.LayerNorm(dim)

    def _shifts(self, h: int, w: int) -> tuple[int, int]:
        if not self.shift:
            return 0, 0
        wh, ww = self.window
        return (wh // 2 if h > wh else 0), (ww // 2 if w > ww else 0)

    def _mask(self, h: int, w: int, sh: int, device: torch.device) -> torch.Tensor | None:
        """Additive mask keeping tokens from the top and bottom rows (joined by the roll) apart."""
        if sh == 0:
            return None
        wh, ww = self.window
        region = torch.zeros(h, dtype=torch.long, device=device)
        region[h - wh:h - sh] = 1
        region[h - sh:] = 2
        # Latitude region of each token in each window; longitude needs no mask (periodic).
        reg = region.reshape(h // wh, wh)[:, :, None].expand(h // wh, wh, ww).reshape(h // wh, 1, wh * ww)
        reg = reg.expand(h // wh, w // ww, wh * ww).reshape(-1, wh * ww)
        diff = reg[:, :, None] != reg[:, None, :]
        return torch.zeros(diff.shape, device=device).masked_fill(diff, -1.0e4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        wh, ww = self.window
        sh, sw = self._shifts(h, w)
        y = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2)) if (sh or sw) else x
        y = y.reshape(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, wh * ww, c)
        y = self.attn(y, self._mask(h, w, sh, x.device))
        y = y.reshape(b, h // wh, w // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        if sh or sw:
            y = torch.roll(y, shifts=(sh, sw), dims=(1, 2))
        x = x + self.norm1(y)
        return x + self.norm2(self.mlp(x))
