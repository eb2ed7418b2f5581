"""Distillation losses for gridded regression (DESIGN.md section 6).

Entropy-corrected distillation (DynamicKD, Zhu et al. 2024) adapted to fields:
each output channel becomes a probability distribution over grid cells,
``softmax(value / tau + log(area weight))`` (channel-wise distillation, Shu et
al. 2021, with the cell area so that polar rows do not dominate). A learnable
per-channel *entropy controller* scales the student's logits inside the KD term
only, so the student can match the teacher's spatial sharpness without the
forecast itself being rescaled; it is trained by gradient descent on the KD loss
together with the student.

Methods (``KD_METHODS``): ``none`` (labels only), ``mse`` (output MSE to the
teacher), ``cwd`` (channel-wise KD without controller) and ``dynamic``
(entropy-corrected, the method of the issue).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fuxiops.errors import FuxiopsError
from fuxiops.grids import latitude_weights

KDMethod = Literal["none", "mse", "cwd", "dynamic"]
KD_METHODS: tuple[str, ...] = ("none", "mse", "cwd", "dynamic")


def area_weights(n_lat: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """WeatherBench 2 cell-area weights (mean 1) for ``n_lat`` rows 90 -> -90, shape (n_lat, 1)."""
    lat = 90.0 - np.arange(n_lat) * 180.0 / (n_lat - 1)
    return torch.as_tensor(latitude_weights(lat), dtype=torch.float32, device=device)[:, None]


def lat_weighted_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Latitude-weighted mean absolute error over (..., lat, lon): the training loss of the forecaster."""
    w = area_weights(pred.shape[-2], pred.device)
    return ((pred - target).abs() * w).mean()


def lat_weighted_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Latitude-weighted mean squared error over (..., lat, lon)."""
    w = area_weights(pred.shape[-2], pred.device)
    return ((pred - target) ** 2 * w).mean()


def channel_log_distribution(x: torch.Tensor, tau: float, log_area: torch.Tensor,
                             scale: torch.Tensor | None = None) -> torch.Tensor:
    """Log-probabilities over grid cells per channel: ``log_softmax(scale * x / tau + log_area)``.

    ``x`` is (B, C, H, W); returns (B, C, H*W). ``scale`` (C,) multiplies the
    logits channel-wise (the entropy controller; None = 1).
    """
    logits = x / tau
    if scale is not None:
        logits = logits * scale.view(1, -1, 1, 1)
    logits = logits + log_area.view(1, 1, -1, 1)
    return F.log_softmax(logits.flatten(2), dim=-1)


def channel_kl(teacher: torch.Tensor, student: torch.Tensor, tau: float, scale: torch.Tensor | None = None
               ) -> torch.Tensor:
    """KL(teacher || student) of the channel-wise spatial distributions, mean over batch and channels."""
    log_area = torch.log(area_weights(teacher.shape[-2], teacher.device)).squeeze(-1)
    log_p_t = channel_log_distribution(teacher, tau, log_area)
    log_p_s = channel_log_distribution(student, tau, log_area, scale)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)
    return kl.mean()


def channel_entropy(x: torch.Tensor, tau: float, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Entropy (nats) of each channel's spatial distribution, mean over the batch: shape (C,)."""
    log_area = torch.log(area_weights(x.shape[-2], x.device)).squeeze(-1)
    logp = channel_log_distribution(x, tau, log_area, scale)
    return -(logp.exp() * logp).sum(-1).mean(0)


class EntropyController(nn.Module):
    """A positive learnable scale per output channel, applied to the student's KD logits only.

    Parametrised as ``exp(log_scale)`` so it stays positive and starts at 1
    (no correction). A scale above 1 sharpens (lowers the entropy of) the
    student's distribution, below 1 flattens it.
    """

    def __init__(self, n_channels: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(n_channels))

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def forward(self) -> torch.Tensor:
        return self.scale


@dataclass(frozen=True)
class KDConfig:
    """Weights of the distillation loss."""

    method: KDMethod = "dynamic"
    tau: float = 1.0
    """Temperature of the spatial softmax (in normalised units)."""
    kd_weight: float = 1.0
    """lambda: weight of tau^2 * KL (cwd, dynamic) or of the output MSE (mse)."""
    mse_weight: float = 0.0
    """Optional extra MSE to the teacher outputs (cwd, dynamic)."""

    def __post_init__(self) -> None:
        if self.method not in KD_METHODS:
            raise FuxiopsError(f"unknown distillation method {self.method!r}; allowed: {', '.join(KD_METHODS)}")
        if self.tau <= 0:
            raise FuxiopsError(f"temperature tau must be > 0, got {self.tau}")
        if self.kd_weight < 0 or self.mse_weight < 0:
            raise FuxiopsError("distillation weights must be >= 0")


class DistillationLoss(nn.Module):
    """Label loss + distillation term; owns the entropy controller for ``dynamic``.

    ``forward(student_out, teacher_out, labels)`` returns the total loss and a
    dict of its parts (detached floats) for logging. The student output is
    used unchanged for the label term: the controller acts inside the KD term.
    """

    def __init__(self, n_channels: int, config: KDConfig = KDConfig()) -> None:
        super().__init__()
        self.config = config
        self.controller = EntropyController(n_channels) if config.method == "dynamic" else None

    def forward(self, student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        label = lat_weighted_l1(student, labels)
        parts: dict[str, float] = {"l1": float(label.detach())}
        total = label
        if cfg.method == "none":
            return total, parts
        if teacher is None:
            raise FuxiopsError(f"distillation method {cfg.method!r} needs teacher outputs")
        teacher = teacher.detach()
        if cfg.method == "mse":
            kd = lat_weighted_mse(student, teacher)
            total = total + cfg.kd_weight * kd
            parts["kd"] = float(kd.detach())
            return total, parts
        scale = self.controller() if self.controller is not None else None
        kl = channel_kl(teacher, student, cfg.tau, scale)
        total = total + cfg.kd_weight * cfg.tau**2 * kl
        parts["kd"] = float(kl.detach())
        if cfg.mse_weight > 0:
            m = lat_weighted_mse(student, teacher)
            total = total + cfg.mse_weight * m
            parts["mse"] = float(m.detach())
        if scale is not None:
            parts["scale_mean"] = float(scale.detach().mean())
        return total, parts
