"""The FuXiWeather2 assimilator as torch modules: a multi-branch convolutional U-Net.

One encoder for the background, one per observation group, one for the
static/clock conditions, and one for the innovations: observation minus
background wherever a gridded channel observes a state channel directly
(``t2m``, ``t850``, ...). Without that branch the network has to learn the
subtraction itself from two differently encoded streams; trained at the
shipped budget it did not (its analyses hardly moved when an observation
changed by 5 K and they applied one learned bias correction every cycle).
Observation features are multiplied by the group's presence flag before
fusion, so a missing group contributes exactly nothing and the all-missing
case is the background-only path. The decoder produces a normalised
increment that :class:`AnalysisModule` adds to the background.

With ``spread_km`` > 0 the increment also gets a successive-correction term
(:class:`InnovationSpread`): a Gaussian-weighted local mean of the innovations
times a learned gain per channel: a pull towards the observations that grows
with the misfit, whose form the network need not learn. On the testbed it did not
slow the cycling drift (docs/training.md), so it is off by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fuxiops.models.layers import LayerNorm2d, SphereConv2d, pole_pad
from fuxiops.models.presets import AssimilatorArch

#: Kilometres per degree of latitude (mean Earth radius 6371 km).
KM_PER_DEGREE = 6371.0 * math.pi / 180.0

#: Innovations are clipped to this many increment standard deviations (QC has removed gross errors
#: already; the clip keeps one bad report from dominating the fused features).
INNOVATION_CLIP = 20.0


@dataclass(frozen=True)
class Innovation:
    """A gridded value channel that observes a state channel directly, and its availability mask."""

    group: str
    value: int
    mask: int
    state: int
    name: str

    def to_dict(self) -> dict[str, int | str]:
        return {"group": self.group, "value": self.value, "mask": self.mask, "state": self.state, "name": self.name}

    @classmethod
    def from_dict(cls, d: dict[str, int | str]) -> "Innovation":
        return cls(str(d["group"]), int(d["value"]), int(d["mask"]), int(d["state"]), str(d["name"]))


def find_innovations(channel_names: Mapping[str, Sequence[str]], state_names: Sequence[str]) -> list[Innovation]:
    """The (value, mask) channel pairs of each group named like a state channel (``t850``, ``t850_mask``)."""
    out = []
    for g, names in channel_names.items():
        names = list(names)
        for si, s in enumerate(state_names):
            if s in names and f"{s}_mask" in names:
                out.append(Innovation(g, names.index(s), names.index(f"{s}_mask"), si, s))
    return out


def gaussian_taps(sigma_cells: float, max_half: int) -> torch.Tensor:
    """A normalised 1-D Gaussian of ``sigma_cells``, cut at 3 sigma (and at ``max_half`` cells each side)."""
    half = max(1, min(max_half, math.ceil(3.0 * sigma_cells)))
    x = torch.arange(-half, half + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / max(sigma_cells, 1e-6)) ** 2)
    return (w / w.sum()).float()


class InnovationSpread(nn.Module):
    """Successive correction: ``gain * G*(d m) / (G*m + kappa)`` per innovation channel, summed per state
    channel (``G``: a separable Gaussian of ``spread_km`` on the sphere, in grid angle, so its east-west
    reach in km narrows towards the poles).

    ``G*m`` is the local observation density; where it is large the term tends to ``gain`` times the local
    mean innovation, where it is small (``<< kappa``) it fades out. Gain (initially 0.5) and kappa
    (initially 0.05) are learned per channel. Innovations arrive in increment standard deviations, so the
    output adds to the network's normalised increment.
    """

    def __init__(self, state_index: Sequence[int], n_state: int, n_lat: int, n_lon: int, spread_km: float) -> None:
        super().__init__()
        n = len(state_index)
        self.register_buffer("lat_taps", gaussian_taps(spread_km / (KM_PER_DEGREE * 180.0 / n_lat), n_lat - 2))
        self.register_buffer("lon_taps", gaussian_taps(spread_km / (KM_PER_DEGREE * 360.0 / n_lon), n_lon // 2 - 1))
        scatter = torch.zeros(n_state, n)
        scatter[list(state_index), list(range(n))] = 1.0
        self.register_buffer("scatter", scatter)
        self.gain = nn.Parameter(torch.full((n,), 0.5))
        self.log_kappa = nn.Parameter(torch.full((n,), math.log(0.05)))

    def smooth(self, x: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian of ``(B, C, lat, lon)``: periodic in longitude, continued across the poles."""
        c = x.shape[1]
        hl, hn = self.lat_taps.numel() // 2, self.lon_taps.numel() // 2
        x = torch.cat([x[..., -hn:], x, x[..., :hn]], dim=-1)
        x = F.conv2d(x, self.lon_taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        x = pole_pad(x, hl, hl)
        return F.conv2d(x, self.lat_taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)

    def forward(self, innovations: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``innovations`` (B, I, H, W), zero where unobserved, and ``masks`` (B, I, H, W) -> (B, C, H, W)."""
        n = innovations.shape[1]
        sm = self.smooth(torch.cat([innovations * masks, masks], dim=1))
        density = sm[:, n:].clamp_min(0.0)  # masks are 0/1; the clamp keeps the division bounded whatever comes in
        term = self.gain[None, :, None, None] * sm[:, :n] / (density + self.log_kappa.exp()[None, :, None, None])
        return torch.einsum("si,bihw->bshw", self.scatter, term)


class Down(nn.Module):
    """2x2 stride-2 conv, LayerNorm, SiLU, 3x3 conv (FuXi-DA down block)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(c_in, c_out, 2, stride=2)
        self.norm = LayerNorm2d(c_out)
        self.conv = SphereConv2d(c_out, c_out, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.silu(self.norm(self.down(x))))


class Up(nn.Module):
    """3x3 conv, LayerNorm, SiLU, 3x3 conv to 4x channels, pixel shuffle x2 (FuXi-DA up block)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = SphereConv2d(c_in, c_in, 3)
        self.norm = LayerNorm2d(c_in)
        self.conv2 = SphereConv2d(c_in, 4 * c_out, 3)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv2(F.silu(self.norm(self.conv1(x)))))


class Encoder(nn.Module):
    """3x3 stem then down blocks; returns the feature map at every scale (fine to coarse)."""

    def __init__(self, c_in: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = SphereConv2d(c_in, widths[0], 3)
        self.downs = nn.ModuleList(Down(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [F.silu(self.stem(x))]
        for d in self.downs:
            feats.append(d(feats[-1]))
        return feats


class AssimNet(nn.Module):
    """Multi-branch U-Net on normalised tensors: background, observation groups, conditions -> increment."""

    def __init__(self, arch: AssimilatorArch, n_state: int, obs_channels: dict[str, int], n_cond: int,
                 n_innovations: int = 0) -> None:
        super().__init__()
        self.arch, self.n_state = arch, n_state
        self.groups = list(obs_channels)
        self.background = Encoder(n_state, arch.widths)
        # Each group's input: its channels plus a presence flag plane.
        self.obs = nn.ModuleDict({g: Encoder(n + 1, arch.obs_widths) for g, n in obs_channels.items()})
        # Innovations and their masks (absent in checkpoints from before the branch existed).
        self.innovation = Encoder(2 * n_innovations, arch.obs_widths) if n_innovations else None
        self.cond = Encoder(n_cond, arch.cond_widths)
        self.fuse = nn.ModuleList(nn.Conv2d(w + ow + cw, w, 1)
                                  for w, ow, cw in zip(arch.widths, arch.obs_widths, arch.cond_widths))
        ws = arch.widths
        self.ups = nn.ModuleList(Up(ws[i], ws[i - 1]) for i in range(len(ws) - 1, 0, -1))
        self.merge = nn.ModuleList(SphereConv2d(2 * ws[i - 1], ws[i - 1], 3) for i in range(len(ws) - 1, 0, -1))
        self.head = nn.Conv2d(ws[0], n_state, 1)

    def forward(self, background: torch.Tensor, obs: dict[str, torch.Tensor], present: torch.Tensor,
                cond: torch.Tensor, innovations: torch.Tensor | None = None,
                innovation_flag: torch.Tensor | None = None) -> torch.Tensor:
        """``background`` (B, C, H, W); ``obs[g]`` (B, n_g, H, W); ``present`` (B, G) in {0, 1};
        ``cond`` (B, K, H, W); ``innovations`` (B, 2I, H, W) (values then masks) and ``innovation_flag``
        (B,) (1 where any of their groups is present) when the net has the branch; H, W multiples of
        2**(scales-1). Returns the normalised increment."""
        b = background.shape[0]
        fb = self.background(background)
        fc = self.cond(cond)
        fo = [torch.zeros(b, w, f.shape[-2], f.shape[-1], dtype=f.dtype, device=f.device)
              for w, f in zip(self.arch.obs_widths, fb)]
        for gi, g in enumerate(self.groups):
            # No data-dependent skip (keeps the graph static for tracing/export): a masked group's
            # features are multiplied by 0, which adds exactly nothing to the fused sum.
            flag = present[:, gi].to(background.dtype)
            planes = flag[:, None, None, None].expand(b, 1, *background.shape[-2:])
            feats = self.obs[g](torch.cat([obs[g] * planes, planes], dim=1))
            for s, f in enumerate(feats):
                fo[s] = fo[s] + f * flag[:, None, None, None]
        if self.innovation is not None:
            if innovations is None or innovation_flag is None:
                raise ValueError("this assimilator needs the innovation planes and their flag")
            flag = innovation_flag.to(background.dtype)[:, None, None, None]
            fo = [o + f * flag for o, f in zip(fo, self.innovation(innovations))]
        fused = [fuse(torch.cat([a, o, c], dim=1)) for fuse, a, o, c in zip(self.fuse, fb, fo, fc)]
        y = fused[-1]
        for k, (up, merge) in enumerate(zip(self.ups, self.merge)):
            skip = fused[-2 - k]
            y = merge(torch.cat([up(y), skip], dim=1))
        return self.head(F.silu(y))


class AnalysisModule(nn.Module):
    """Physical background in, physical analysis out: normalisation, grid padding, static/clock conditions."""

    def __init__(self, arch: AssimilatorArch, n_state: int, obs_channels: dict[str, int], static: torch.Tensor,
                 n_clock: int = 4, innovations: Sequence[Innovation] = ()) -> None:
        super().__init__()
        self.arch, self.n_state, self.obs_channels = arch, n_state, dict(obs_channels)
        groups = list(obs_channels)
        for inn in innovations:
            if inn.group not in obs_channels or not (0 <= inn.state < n_state) or \
                    max(inn.value, inn.mask) >= obs_channels[inn.group]:
                raise ValueError(f"innovation {inn} does not fit groups {obs_channels} and {n_state} states")
        self.innovations = list(innovations)
        self._inn_index = [(groups.index(i.group), i.group, i.value, i.mask, i.state) for i in self.innovations]
        self._inn_groups = sorted({gi for gi, *_ in self._inn_index})
        self.net = AssimNet(arch, n_state, obs_channels, static.shape[0] + n_clock, len(self.innovations))
        if arch.spread_km > 0 and not self.innovations:
            raise ValueError("spread_km needs innovation channels (observed state channels) to spread")
        self.spread = InnovationSpread([i.state for i in self.innovations], n_state, static.shape[-2],
                                       static.shape[-1], arch.spread_km) if arch.spread_km > 0 else None
        self.register_buffer("static", static.float().clone())
        for name in ("mean", "std", "inc_std"):
            self.register_buffer(name, torch.zeros(n_state) if name == "mean" else torch.ones(n_state))
        n_lat = static.shape[-2]
        m = arch.multiple
        extra = -(-n_lat // m) * m - n_lat
        self.pad_top, self.pad_bottom = extra // 2, extra - extra // 2

    def set_normalisation(self, stats: dict[str, torch.Tensor]) -> None:
        for k, v in stats.items():
            getattr(self, k).copy_(torch.as_tensor(v, dtype=torch.float32))

    def _innovations(self, bn: torch.Tensor, obs: dict[str, torch.Tensor], present: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Observation minus background in increment standard deviations, zero where nothing was observed,
        and a flag (B,) that is 0 when none of their groups is present (the branch then adds nothing).

        The ingest layer normalises a channel that observes a state channel with that channel's state
        statistics, so the difference of normalised values is the normalised innovation.
        """
        values, masks = [], []
        for gi, g, vi, mi, si in self._inn_index:
            m = obs[g][:, mi] * present[:, gi, None, None].to(bn.dtype)
            d = (obs[g][:, vi] - bn[:, si]) * (self.std[si] / self.inc_std[si])
            values.append((d * m).clamp(-INNOVATION_CLIP, INNOVATION_CLIP))
            masks.append(m)
        return torch.stack(values + masks, dim=1), present[:, self._inn_groups].amax(dim=1)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        return pole_pad(x, self.pad_top, self.pad_bottom)

    def forward(self, background: torch.Tensor, obs: dict[str, torch.Tensor], present: torch.Tensor,
                clock: torch.Tensor) -> torch.Tensor:
        """``background`` (B, C, H, W) physical; returns the analysis (B, C, H, W)."""
        b = background.shape[0]
        h, w = background.shape[-2:]
        bn = (background - self.mean[:, None, None]) / self.std[:, None, None]
        cond = torch.cat([self.static[None].expand(b, -1, -1, -1),
                          clock[:, :, None, None].expand(b, clock.shape[1], h, w)], dim=1)
        inn, flag = self._innovations(bn, obs, present) if self.innovations else (None, None)
        inc = self.net(self._pad(bn), {g: self._pad(o) for g, o in obs.items()}, present, self._pad(cond),
                       None if inn is None else self._pad(inn), flag)
        inc = inc[..., self.pad_top:self.pad_top + h, :]
        if self.spread is not None:
            k = len(self.innovations)
            inc = inc + self.spread(inn[:, :k], inn[:, k:])  # masks of absent groups are 0: no term
        return background + inc * self.inc_std[:, None, None]
