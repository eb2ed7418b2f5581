"""The FuXi-style Swin U-Transformer forecaster as torch modules.

:class:`FuXiNet` maps normalised inputs ``(B, T, C, H, W)`` plus condition
planes ``(B, K, H, W)`` (static fields and clock) to normalised outputs.
:class:`ForecastModule` wraps it with everything a step needs in physical
units: normalisation buffers, the static fields of its grid, the clock planes
and the residual formulation. It is what checkpoints hold and what ONNX export
traces: ``forward(x (B, T, C, H, W) physical, clock (B, 4)) -> (B, C_out, H, W)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fuxiops.models.layers import ResBlock, SphereConv2d, pole_pad
from fuxiops.models.presets import ForecasterArch
from fuxiops.models.swin import SwinBlock


class CubeEmbedding(nn.Module):
    """3-D conv with kernel = stride = patch over (time, lat, lon), then LayerNorm over channels."""

    def __init__(self, c_in: int, c_out: int, patch: tuple[int, int, int]) -> None:
        super().__init__()
        self.proj = nn.Conv3d(c_in, c_out, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, C, T, H, W) -> (B, C_out, H/ph, W/pw) (time collapsed: T == patch[0])."""
        y = self.proj(x).squeeze(2)
        return self.norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class DownBlock(nn.Module):
    """3x3 stride-2 conv then a residual GroupNorm/SiLU block (inner width ``hidden``, default c_out)."""

    def __init__(self, c_in: int, c_out: int, groups: int, hidden: int | None = None) -> None:
        super().__init__()
        self.conv = SphereConv2d(c_in, c_out, 3, stride=2)
        self.res = ResBlock(c_out, groups, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(self.conv(x))


class UpBlock(nn.Module):
    """2x2 stride-2 transposed conv then a residual GroupNorm/SiLU block (inner width ``hidden``)."""

    def __init__(self, c_in: int, c_out: int, groups: int, hidden: int | None = None) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(c_in, c_out, kernel_size=2, stride=2)
        self.res = ResBlock(c_out, groups, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(self.conv(x))


class FuXiNet(nn.Module):
    """Normalised tensors in, normalised tensors out; sub-networks ``embed``, ``down``, ``blocks``,
    ``up``, ``head`` (the split the pruning search works on)."""

    def __init__(self, arch: ForecasterArch, n_state: int, n_cond: int, n_out: int, n_lat: int) -> None:
        super().__init__()
        self.arch, self.n_state, self.n_cond, self.n_out, self.n_lat = arch, n_state, n_cond, n_out, n_lat
        self.rows = arch.rows_for(n_lat)
        pt, ph, pw = arch.patch
        self.embed = CubeEmbedding(n_state + n_cond, arch.embed_dim, arch.patch)
        self.down = DownBlock(arch.embed_dim, arch.dim, arch.groups, arch.down_hidden)
        self.blocks = nn.ModuleList(
            SwinBlock(arch.dim, h, arch.head_dim, m, arch.window, shift=(i % 2 == 1), cpb_hidden=arch.cpb_hidden)
            for i, (h, m) in enumerate(zip(arch.heads, arch.mlp_hidden)))
        self.up = UpBlock(arch.dim, arch.embed_dim, arch.groups, arch.up_hidden)
        self.head = nn.Linear(2 * arch.embed_dim, n_out * ph * pw)

    def _to_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Make the rows what the windows need (resample or pad across the poles)."""
        if x.shape[-2] == self.rows:
            return x
        if self.arch.lat_mode == "pad":
            extra = self.rows - x.shape[-2]
            return pole_pad(x, extra // 2, extra - extra // 2)
        lead = x.shape[:-2]
        y = F.interpolate(x.reshape(-1, 1, *x.shape[-2:]), size=(self.rows, x.shape[-1]), mode="bilinear",
                          align_corners=True)
        return y.reshape(*lead, self.rows, x.shape[-1])

    def _from_rows(self, y: torch.Tensor) -> torch.Tensor:
        if y.shape[-2] == self.n_lat:
            return y
        if self.arch.lat_mode == "pad":
            extra = self.rows - self.n_lat
            return y[..., extra // 2: extra // 2 + self.n_lat, :]
        return F.interpolate(y, size=(self.n_lat, y.shape[-1]), mode="bilinear", align_corners=True)

    def encode(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cube embedding ``e`` (B, E, h', w') (kept for the skip) and the down block's tokens (B, h, w, D)."""
        b, t = x.shape[:2]
        c = cond[:, None].expand(b, t, *cond.shape[1:])
        z = self._to_rows(torch.cat([x, c], dim=2))  # (B, T, C+K, rows, W)
        e = self.embed(z.transpose(1, 2))  # (B, E, rows/ph, W/pw)
        return e, self.down(e).permute(0, 2, 3, 1)

    def decode(self, e: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Up block on the Swin tokens ``h``, skip from ``e``, linear head back to (B, C_out, H, W)."""
        b = e.shape[0]
        _, ph, pw = self.arch.patch
        u = self.up(h.permute(0, 3, 1, 2))
        y = self.head(torch.cat([u, e], dim=1).permute(0, 2, 3, 1))  # (B, h', w', C_out*ph*pw)
        hh, ww = y.shape[1:3]
        y = y.reshape(b, hh, ww, self.n_out, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(b, self.n_out, hh * ph,
                                                                                      ww * pw)
        return self._from_rows(y)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``x``: (B, T, C, H, W) normalised states; ``cond``: (B, K, H, W) -> (B, C_out, H, W)."""
        e, h = self.encode(x, cond)
        for blk in self.blocks:
            h = blk(h)
        return self.decode(e, h)


class ForecastModule(nn.Module):
    """Physical units in and out: normalisation, static + clock conditions, residual formulation.

    Buffers (saved with the weights): ``mean``/``std`` per state channel,
    ``res_mean``/``res_std`` of the 6-hour tendencies, ``out_mean``/``out_std`` of
    diagnostics, and ``static`` (K_static, H, W) condition planes.
    """

    def __init__(self, arch: ForecasterArch, n_state: int, n_diag: int, static: torch.Tensor,
                 n_clock: int = 4) -> None:
        super().__init__()
        self.arch, self.n_state, self.n_diag = arch, n_state, n_diag
        n_lat = static.shape[-2]
        self.net = FuXiNet(arch, n_state, static.shape[0] + n_clock, n_state + n_diag, n_lat)
        self.register_buffer("static", static.float().clone())
        for name, n in (("mean", n_state), ("std", n_state), ("res_mean", n_state), ("res_std", n_state),
                        ("diag_mean", n_diag), ("diag_std", n_diag)):
            self.register_buffer(name, torch.zeros(n) if "mean" in name else torch.ones(n))

    def set_normalisation(self, stats: dict[str, torch.Tensor]) -> None:
        for k, v in stats.items():
            getattr(self, k).copy_(torch.as_tensor(v, dtype=torch.float32))

    @staticmethod
    def _c(v: torch.Tensor) -> torch.Tensor:
        return v[:, None, None]

    def cond(self, clock: torch.Tensor) -> torch.Tensor:
        b = clock.shape[0]
        h, w = self.static.shape[-2:]
        planes = clock[:, :, None, None].expand(b, clock.shape[1], h, w)
        return torch.cat([self.static[None].expand(b, -1, -1, -1), planes], dim=1)

    def forward_normalised(self, x: torch.Tensor, clock: torch.Tensor) -> torch.Tensor:
        """The network's raw output (normalised tendency / diagnostics) for physical inputs ``x``."""
        xn = (x - self._c(self.mean)) / self._c(self.std)
        return self.net(xn, self.cond(clock))

    def denormalise(self, y: torch.Tensor, x_last: torch.Tensor) -> torch.Tensor:
        s = y[:, :self.n_state]
        if self.arch.residual:
            state = x_last + s * self._c(self.res_std) + self._c(self.res_mean)
        else:
            state = s * self._c(self.std) + self._c(self.mean)
        if self.n_diag == 0:
            return state
        # Diagnostics (accumulations) are non-negative physical amounts.
        diag = F.relu(y[:, self.n_state:] * self._c(self.diag_std) + self._c(self.diag_mean))
        return torch.cat([state, diag], dim=1)

    def forward(self, x: torch.Tensor, clock: torch.Tensor) -> torch.Tensor:
        """``x``: (B, T, C_state, H, W) physical, oldest first; ``clock``: (B, 4) of the target time."""
        return self.denormalise(self.forward_normalised(x, clock), x[:, -1])
