"""Size of a network for a preset and grid: parameters, FLOPs and activation memory per step.

Networks are built on the ``meta`` device (no memory is allocated, so the
paper-size model is summarised on a laptop) and one forward step is traced:
FLOPs are counted by ``torch.utils.flop_counter`` (a multiply-add counts 2),
activation memory by a dispatch mode that follows every tensor the step
creates: ``peak_live`` is the most activation bytes alive at once (inference),
``total`` the bytes of all intermediate results (an upper bound of what
training keeps for the backward pass).
"""

from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from fuxiops.catalog import VariableSet
from fuxiops.grids import Grid
from fuxiops.models.assimilator_net import AnalysisModule
from fuxiops.models.features import CLOCK_NAMES, STATIC_NAMES
from fuxiops.models.forecaster_net import ForecastModule
from fuxiops.models.presets import AssimilatorArch, ForecasterArch

#: Observation groups assumed when summarising an assimilator without a checkpoint: the default
#: gridded channels of the testbed's streams (counts only matter for the size of the obs encoders).
DEFAULT_OBS_CHANNELS: dict[str, int] = {"synop": 8, "temp": 16, "amdar": 8, "gnssro": 8, "mwts": 12}


@dataclass(frozen=True)
class NetworkSummary:
    network: str
    preset: str
    grid: str
    parameters: int
    flops_per_step: int
    activation_peak_bytes: int
    activation_total_bytes: int
    weights_bytes: int
    tokens: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _MemoryTracker(TorchDispatchMode):
    """Follows the bytes of tensors produced by ops until they are freed."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.total = 0
        self._seen: set[int] = set()

    def _free(self, n: int) -> None:
        self.live -= n

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        flat, _ = tree_flatten(out)
        in_ids = {id(a) for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)}
        for t in flat:
            if isinstance(t, torch.Tensor) and id(t) not in in_ids and not t._is_view():
                n = t.numel() * t.element_size()
                self.live += n
                self.total += n
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._free, n)
        return out


def _trace(module: torch.nn.Module, *inputs: Any) -> tuple[int, int, int]:
    tracker = _MemoryTracker()
    with torch.no_grad(), FlopCounterMode(display=False) as fc, tracker:
        out = module(*inputs)
        del out
    return int(fc.get_total_flops()), tracker.peak, tracker.total


def _count(module: torch.nn.Module) -> tuple[int, int]:
    params = sum(p.numel() for p in module.parameters())
    nbytes = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    return params, nbytes


def summarise_forecaster(arch: ForecasterArch, variables: VariableSet, grid: Grid, preset: str = "custom"
                         ) -> NetworkSummary:
    arch.check_grid(grid)
    n, k = len(variables.state_channels), len(variables.diagnostic_channels)
    with torch.device("meta"):
        m = ForecastModule(arch, n, k, torch.empty(len(STATIC_NAMES), *grid.shape))
        x = torch.empty(1, arch.patch[0], n, *grid.shape)
        clock = torch.empty(1, len(CLOCK_NAMES))
    flops, peak, total = _trace(m, x, clock)
    params, nbytes = _count(m)
    rows = arch.rows_for(grid.n_lat)
    e = (rows // arch.patch[1], grid.n_lon // arch.patch[2])
    return NetworkSummary("forecaster", preset, grid.name, params, flops, peak, total, nbytes,
                          f"embedding {arch.embed_dim}x{e[0]}x{e[1]}, Swin {arch.dim}x{e[0] // 2}x{e[1] // 2}")


def summarise_assimilator(arch: AssimilatorArch, variables: VariableSet, grid: Grid,
                          obs_channels: dict[str, int] | None = None, preset: str = "custom") -> NetworkSummary:
    obs_channels = dict(obs_channels or DEFAULT_OBS_CHANNELS)
    n = len(variables.state_channels)
    with torch.device("meta"):
        m = AnalysisModule(arch, n, obs_channels, torch.empty(len(STATIC_NAMES), *grid.shape))
        bg = torch.empty(1, n, *grid.shape)
        obs = {g: torch.empty(1, c, *grid.shape) for g, c in obs_channels.items()}
        clock = torch.empty(1, len(CLOCK_NAMES))
    present = torch.ones(1, len(obs_channels), device="meta")
    flops, peak, total = _trace(m, bg, obs, present, clock)
    params, nbytes = _count(m)
    return NetworkSummary("assimilator", preset, grid.name, params, flops, peak, total, nbytes,
                          f"scales {len(arch.widths)}, widths {list(arch.widths)}, groups {len(obs_channels)}")


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23 M' (SI prefixes; bytes use binary prefixes when unit == 'B')."""
    if unit == "B":
        for p in ("B", "KiB", "MiB", "GiB", "TiB"):
            if abs(n) < 1024 or p == "TiB":
                return f"{n:.3g} {p}"
            n /= 1024
    for p in ("", "K", "M", "G", "T", "P"):
        if abs(n) < 1000 or p == "P":
            return f"{n:.3g} {p}{unit}".rstrip()
        n /= 1000
    return str(n)  # pragma: no cover
