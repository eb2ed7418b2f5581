"""Convolution building blocks on the sphere's lat-lon grid: periodic in longitude, pole-aware in latitude.

Longitude wraps around, so every convolution pads circularly in longitude;
latitude is padded by continuing across the pole (the row k beyond a pole is
row k inside it, shifted by 180 degrees of longitude). Both commute with a
longitude roll, which keeps the networks equivariant to it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pole_pad(x: torch.Tensor, top: int, bottom: int) -> torch.Tensor:
    """Extend ``(..., lat, lon)`` by ``top``/``bottom`` rows across the poles (lon shifted by 180 deg)."""
    if top == 0 and bottom == 0:
        return x
    n_lon = x.shape[-1]
    half = n_lon // 2
    parts = []
    if top:
        # Rows 1..top mirrored (row 0 is the pole itself), rotated half way round.
        parts.append(torch.roll(torch.flip(x[..., 1:top + 1, :], dims=[-2]), shifts=half, dims=-1))
    parts.append(x)
    if bottom:
        parts.append(torch.roll(torch.flip(x[..., -bottom - 1:-1, :], dims=[-2]), shifts=half, dims=-1))
    return torch.cat(parts, dim=-2)


def sphere_pad(x: torch.Tensor, pad_lat: int, pad_lon: int) -> torch.Tensor:
    """Pad ``(B, C, lat, lon)`` circularly in longitude and across the poles in latitude."""
    # Latitude first: the pole continuation rotates by half of the unpadded longitudes.
    if pad_lat:
        x = pole_pad(x, pad_lat, pad_lat)
    if pad_lon:
        x = torch.cat([x[..., -pad_lon:], x, x[..., :pad_lon]], dim=-1)
    return x


class SphereConv2d(nn.Module):
    """A 2-D convolution with odd kernel padded on the sphere (periodic longitude)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.pad = kernel // 2
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(sphere_pad(x, self.pad, self.pad))


class ResBlock(nn.Module):
    """x + conv(SiLU(GN(conv(SiLU(GN(x)))))) with sphere-padded 3x3 convs (FuXi down/up blocks).

    ``hidden`` is the width between the two convolutions (default ``channels``: the FuXi block). It is
    counted in GroupNorm groups of ``channels // groups`` channels, so removing whole groups of the
    hidden width (structured pruning) leaves the normalisation of the kept groups unchanged.
    """

    def __init__(self, channels: int, groups: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = channels if hidden is None else int(hidden)
        per_group = channels // groups
        if channels % groups or hidden < per_group or hidden % per_group:
            raise ValueError(f"residual block hidden width {hidden} must be a positive multiple of the "
                             f"GroupNorm group size {channels}/{groups}")
        self.hidden = hidden
        self.norm1 = nn.GroupNorm(groups, channels)
        self.conv1 = SphereConv2d(channels, hidden, 3)
        self.norm2 = nn.GroupNorm(hidden // per_group, hidden)
        self.conv2 = SphereConv2d(hidden, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dim of a ``(B, C, H, W)`` map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
