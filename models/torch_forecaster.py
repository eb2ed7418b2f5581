"""The PyTorch forecaster runtime: a :class:`ForecastModule` behind the :class:`Forecaster` interface.

Handles device placement, casting (fp32; optional autocast on CUDA), the clock
features of each step, building fresh networks from a preset and saving /
loading checkpoints. Registered as runtime ``torch``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fuxiops.catalog import VariableSet
from fuxiops.errors import DataError
from fuxiops.grids import Grid
from fuxiops.models.base import CheckpointError, Forecaster, ModelCoords, resolve_device
from fuxiops.models.checkpoint import CheckpointMeta, TorchCheckpointed, check_normalisation, load_into
from fuxiops.models.features import StaticFields, clock_features, static_fields
from fuxiops.models.forecaster_net import ForecastModule
from fuxiops.models.normalisation import NormStats
from fuxiops.models.presets import ForecasterArch, get_preset


class TorchForecaster(TorchCheckpointed, Forecaster):
    """A FuXi-style network run with PyTorch; a drop-in :class:`Forecaster`."""

    kind = "forecaster"

    def __init__(self, module: ForecastModule, coords: ModelCoords, norm: NormStats, preset: str = "custom",
                 static_source: str = "", device: str = "cpu", autocast: bool = False,
                 training: dict[str, Any] | None = None, checkpoint: str | None = None,
                 weights_sha256: str = "") -> None:
        self.device = torch.device(resolve_device(device))
        self.module = module.to(self.device).eval()
        self._coords = coords
        self.norm = norm
        self.preset = preset
        self.static_source = static_source
        self.autocast = autocast and self.device.type == "cuda"
        self.training = dict(training or {})
        self.checkpoint = checkpoint
        self.weights_sha256 = weights_sha256
        self.name = f"fuxiops-forecaster-{preset}"
        self._check_offsets()
        if module.arch.patch[0] != coords.n_inputs:
            raise DataError(f"cube embedding time patch {module.arch.patch[0]} must equal the number of input "
                            f"times {coords.n_inputs}")

    @property
    def coords(self) -> ModelCoords:
        return self._coords

    @property
    def arch(self) -> ForecasterArch:
        return self.module.arch

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, arch: ForecasterArch | str, variables: VariableSet, grid: Grid, norm: NormStats | None = None,
              static: StaticFields | None = None, seed: int = 0, device: str = "cpu",
              step_hours: int = 6) -> "TorchForecaster":
        """A fresh (untrained) forecaster; ``arch`` is a preset name or an architecture."""
        preset = arch if isinstance(arch, str) else "custom"
        a = get_preset(arch).forecaster if isinstance(arch, str) else arch
        a.check_grid(grid)
        static = static or static_fields(grid)
        if static.grid != grid:
            raise DataError(f"static fields are for grid {static.grid.name!r}, the network for {grid.name!r}")
        norm = norm or NormStats.identity(variables)
        _check_norm(norm, variables)
        torch.manual_seed(seed)
        module = ForecastModule(a, len(variables.state_channels), len(variables.diagnostic_channels),
                                torch.from_numpy(static.planes))
        module.set_normalisation({k: torch.from_numpy(v) for k, v in norm.tensors().items()})
        coords = ModelCoords(variables, grid, step_hours, (-step_hours, 0))
        return cls(module, coords, norm, preset, static.source, device)

    # ------------------------------------------------------------------ running
    def step(self, inputs: np.ndarray, time: np.datetime64) -> np.ndarray:
        self.check_inputs_array(inputs)
        target = np.datetime64(time, "ns") + np.timedelta64(self.coords.step_hours, "h")
        x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))[None].to(self.device)
        clock = torch.from_numpy(clock_features(target))[None].to(self.device)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.autocast):
            y = self.module(x, clock)
        return y[0].float().cpu().numpy()

    # ------------------------------------------------------------------ checkpoints
    def metadata(self, training: dict[str, Any] | None = None) -> CheckpointMeta:
        return CheckpointMeta(kind=self.kind, preset=self.preset, architecture=self.arch.to_dict(),
                              coords=self.coords, normalisation=self.norm, static_source=self.static_source,
                              training=dict(training if training is not None else self.training))

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", autocast: bool = False) -> "TorchForecaster":
        meta = cls.read_checked_metadata(path)
        arch = meta.forecaster_arch()
        vs = meta.coords.variables
        _check_norm(meta.normalisation, vs)
        state = cls.load_weights(path, meta)
        module = ForecastModule(arch, len(vs.state_channels), len(vs.diagnostic_channels), state["static"])
        if tuple(state["static"].shape[-2:]) != meta.coords.grid.shape:
            raise CheckpointError(f"{path}: static fields are {tuple(state['static'].shape[-2:])}, grid "
                                  f"{meta.coords.grid.name} is {meta.coords.grid.shape}")
        load_into(module, state, str(path))
        check_normalisation(module, meta.normalisation, str(path))
        return cls(module, meta.coords, meta.normalisation, meta.preset, meta.static_source, device, autocast,
                   meta.training, str(path), meta.weights_sha256)


def _check_norm(norm: NormStats, variables: VariableSet) -> None:
    if list(norm.channels) != variables.state_names:
        raise CheckpointError(f"normalisation is for channels {list(norm.channels)[:5]}..., the network's state "
                              f"is {variables.state_names[:5]}...")
    n = len(variables.state_channels)
    if any(len(a) != n for a in (norm.mean, norm.std, norm.res_mean, norm.res_std)):
        raise CheckpointError("normalisation arrays do not have one value per state channel")
    if list(norm.diag_channels) != [c.name for c in variables.diagnostic_channels]:
        raise CheckpointError(f"normalisation diagnostics {list(norm.diag_channels)} differ from the network's "
                              f"{[c.name for c in variables.diagnostic_channels]}")


def load_torch_forecaster(path: str | Path, device: str = "cpu", **kwargs: Any) -> TorchForecaster:
    """Registry factory of the ``torch`` runtime."""
    return TorchForecaster.load(path, device=device, **kwargs)
