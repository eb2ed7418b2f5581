"""Training losses of FuXiWeather2: latitude-weighted L1 on states and L1 at in-situ observations.

Both are computed in normalised units (per-channel standard deviation) so that
every variable counts comparably. ``L_obs`` compares the analysis (or
background) with observations at the grid cells where an in-situ report
exists, with FuXiWeather2's channel weights: surface 0.2; upper air
decreasing with height, 0.02 above 500 hPa.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from fuxiops.catalog import Channel
from fuxiops.models.training.data import InsituTarget


def lat_weighted_l1(pred: torch.Tensor, target: torch.Tensor, std: torch.Tensor, wlat: torch.Tensor) -> torch.Tensor:
    """mean over (batch, channel, lat, lon) of w_lat * |pred - target| / std_channel."""
    err = (pred - target).abs() / std[:, None, None]
    return (err * wlat[:, None]).mean()


def obs_channel_weight(ch: Channel) -> float:
    """FuXiWeather2's L_obs channel weights."""
    if not ch.variable.is_upper_air:
        return 0.2
    p = float(ch.level or 0)
    if p < 500:
        return 0.02
    # 500 hPa -> 0.2, 1000 hPa -> 1.0: decreasing with height.
    return 0.2 + 0.8 * (p - 500.0) / 500.0


def obs_loss(state: torch.Tensor, obs: dict[str, torch.Tensor], targets: Sequence[InsituTarget],
             std: torch.Tensor, wlat: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """Latitude- and channel-weighted mean |state - obs| / std at observed cells.

    ``state`` is (B, C, H, W) physical; ``obs[g]`` is (B, n_g, H, W) gridded
    (normalised by the ingest layer, denormalised here with each target's
    scale/offset). Returns 0 when nothing is observed.
    """
    total = state.new_zeros(())
    norm = state.new_zeros(())
    for tgt, w in zip(targets, weights):
        if tgt.group not in obs:
            continue
        g = obs[tgt.group]
        mask = g[:, tgt.mask_index] > 0.5
        if not bool(mask.any()):
            continue
        value = g[:, tgt.value_index] * tgt.scale + tgt.offset
        err = (state[:, tgt.state_index] - value).abs() / std[tgt.state_index]
        wm = mask.float() * wlat[:, None] * w
        total = total + (err * wm).sum()
        norm = norm + wm.sum()
    return total / norm.clamp_min(1e-6) if float(norm) > 0 else total


def lat_weights_tensor(lat_weights: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(lat_weights, dtype=torch.float32)
