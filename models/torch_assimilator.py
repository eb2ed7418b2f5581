"""The PyTorch assimilator runtime: an :class:`AnalysisModule` behind the :class:`Assimilator` interface.

Reads a background state and the gridded observations of the ingest layer
(one data variable per observation group), masks groups that are missing,
and returns the analysis as a state dataset. Registered as runtime ``torch``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import xarray as xr

from fuxiops.catalog import VariableSet
from fuxiops.errors import DataError
from fuxiops.grids import Grid
from fuxiops.models.assimilator_net import AnalysisModule, Innovation, find_innovations
from fuxiops.models.base import (TIME, Assimilator, CheckpointError, ModelCoords, check_state, obs_group_arrays,
                                 resolve_device)
from fuxiops.models.checkpoint import CheckpointMeta, TorchCheckpointed, check_normalisation, load_into
from fuxiops.models.features import StaticFields, clock_features, static_fields
from fuxiops.models.normalisation import NormStats
from fuxiops.models.presets import AssimilatorArch, get_preset
from fuxiops.state import from_channels, to_channels


class TorchAssimilator(TorchCheckpointed, Assimilator):
    """Multi-branch U-Net analysis run with PyTorch."""

    kind = "assimilator"

    def __init__(self, module: AnalysisModule, coords: ModelCoords, norm: NormStats, preset: str = "custom",
                 static_source: str = "", device: str = "cpu", training: dict[str, Any] | None = None,
                 checkpoint: str | None = None, weights_sha256: str = "") -> None:
        self.device = torch.device(resolve_device(device))
        self.module = module.to(self.device).eval()
        self._coords = coords
        self.norm = norm
        self.preset = preset
        self.static_source = static_source
        self.training = dict(training or {})
        self.checkpoint = checkpoint
        self.weights_sha256 = weights_sha256
        self.name = f"fuxiops-assimilator-{preset}"

    @property
    def coords(self) -> ModelCoords:
        return self._coords

    @property
    def obs_channels(self) -> dict[str, int]:
        return dict(self.module.obs_channels)

    @property
    def arch(self) -> AssimilatorArch:
        return self.module.arch

    @property
    def innovations(self) -> list[Innovation]:
        return list(self.module.innovations)

    @classmethod
    def build(cls, arch: AssimilatorArch | str, variables: VariableSet, grid: Grid, obs_channels: Mapping[str, int],
              norm: NormStats | None = None, static: StaticFields | None = None, seed: int = 0,
              device: str = "cpu", channel_names: Mapping[str, Sequence[str]] | None = None,
              spread_km: float | None = None) -> "TorchAssimilator":
        """A fresh (untrained) assimilator for observation groups ``obs_channels`` (name -> channels).

        ``channel_names`` (group -> gridded channel names) enables the innovation branch for every
        channel that observes a state channel directly; ``spread_km`` overrides the architecture's
        successive-correction length scale on those innovations.
        """
        preset = arch if isinstance(arch, str) else "custom"
        a = get_preset(arch).assimilator if isinstance(arch, str) else arch
        if spread_km is not None:
            a = replace(a, spread_km=float(spread_km))
        for g, n in obs_channels.items():
            if not g.isidentifier() or n < 1:
                raise DataError(f"observation group {g!r} needs an identifier name and >= 1 channel, got {n}")
        static = static or static_fields(grid)
        norm = norm or NormStats.identity(variables)
        if list(norm.channels) != variables.state_names:
            raise CheckpointError("normalisation channels differ from the assimilator's state channels")
        torch.manual_seed(seed)
        if channel_names is not None:
            for g, n in obs_channels.items():
                if len(channel_names.get(g, ())) != n:
                    raise DataError(f"observation group {g!r}: {len(channel_names.get(g, ()))} channel names "
                                    f"for {n} channels")
        inns = find_innovations({g: channel_names[g] for g in obs_channels}, variables.state_names) \
            if channel_names is not None else []
        module = AnalysisModule(a, len(variables.state_channels), dict(obs_channels), torch.from_numpy(static.planes),
                                innovations=inns)
        module.set_normalisation({"mean": torch.from_numpy(norm.mean), "std": torch.from_numpy(norm.std),
                                  "inc_std": torch.from_numpy(norm.res_std)})
        coords = ModelCoords(VariableSet(variables.upper_air, variables.levels, variables.surface, ()), grid, 0,
                             (0,)) if variables.diagnostics else ModelCoords(variables, grid, 0, (0,))
        return cls(module, coords, norm, preset, static.source, device)

    # ------------------------------------------------------------------ running
    def background_array(self, background: xr.Dataset, time: np.datetime64) -> np.ndarray:
        check_state(background, self.coords, "background")
        bg = background
        if TIME in bg.dims:
            times = bg[TIME].values.astype("datetime64[ns]")
            if time not in set(times):
                raise DataError(f"background has no state at {time}; it has {[str(t) for t in times]}")
            bg = bg.sel({TIME: time})
        elif TIME in bg.coords and "valid_time" not in bg.coords:
            if np.datetime64(bg[TIME].values, "ns") != time:
                raise DataError(f"background is valid at {bg[TIME].values}, the analysis is for {time}")
        if "valid_time" in bg.coords and np.datetime64(bg["valid_time"].values, "ns") != time:
            raise DataError(f"background is valid at {bg['valid_time'].values}, the analysis is for {time}")
        arr = to_channels(bg, self.coords.variables.state_channels)
        if arr.ndim != 3:
            raise DataError(f"background must be one state; got extra dims {arr.shape[:-3]}")
        if not np.all(np.isfinite(arr)):
            raise DataError("background has non-finite values")
        return arr

    def analyse_arrays(self, background: np.ndarray, obs: Mapping[str, np.ndarray | None],
                       time: np.datetime64) -> np.ndarray:
        """Channel-array form: ``background`` (C, lat, lon), ``obs[g]`` (n_g, lat, lon) or None (masked)."""
        h, w = self.coords.grid.shape
        groups = list(self.module.obs_channels)
        present = torch.tensor([[0.0 if obs.get(g) is None else 1.0 for g in groups]], device=self.device)
        tensors = {g: (torch.zeros(1, n, h, w) if obs.get(g) is None else torch.from_numpy(obs[g])[None])
                   .to(self.device) for g, n in self.module.obs_channels.items()}
        bg = torch.from_numpy(np.ascontiguousarray(background, dtype=np.float32))[None].to(self.device)
        clock = torch.from_numpy(clock_features(time))[None].to(self.device)
        with torch.inference_mode():
            out = self.module(bg, tensors, present, clock)
        return out[0].cpu().numpy()

    def analyse(self, background: xr.Dataset, observations: xr.Dataset | None,
                time: np.datetime64 | str) -> xr.Dataset:
        t = np.datetime64(time, "ns")
        bg = self.background_array(background, t)
        obs = obs_group_arrays(observations, self.module.obs_channels, self.coords.grid)
        if observations is not None and self.module.innovations:
            obs = self._state_normalised(observations, obs)
        out = self.analyse_arrays(bg, obs, t)
        used = [g for g, a in obs.items() if a is not None]
        ds = from_channels(out, self.coords.variables.state_channels, self.coords.grid,
                           attrs={"model": self.name, "observation_groups_used": ",".join(used),
                                  "observation_groups_missing": ",".join(g for g in obs if g not in used)})
        return ds.assign_coords({TIME: t})

    def _state_normalised(self, observations: xr.Dataset, obs: dict[str, np.ndarray | None]
                          ) -> dict[str, np.ndarray | None]:
        """Check the innovation channels' names and put their values in the state's normalisation.

        Trained checkpoints grid with the state statistics already (a no-op then); a deployment that
        grids with per-cycle statistics still gets innovations in the units the network computes them in.
        """
        out = dict(obs)
        for inn in self.module.innovations:
            arr = out.get(inn.group)
            if arr is None:
                continue
            da = observations[inn.group]
            cdim = f"{inn.group}_channel"
            if cdim in da.coords:
                names = [str(c) for c in da[cdim].values]
                if names[inn.value] != inn.name or names[inn.mask] != f"{inn.name}_mask":
                    raise DataError(f"observation group {inn.group!r}: channels {inn.value}/{inn.mask} are "
                                    f"{names[inn.value]!r}/{names[inn.mask]!r}, the assimilator expects "
                                    f"{inn.name!r}/{inn.name + '_mask'!r}")
            stats = json.loads(da.attrs.get("normalisation", "{}")).get(inn.name)
            mean, std = float(self.norm.mean[inn.state]), float(self.norm.std[inn.state])
            if stats is not None and not np.allclose(stats, (mean, std), rtol=1e-5):
                arr = arr.copy()
                m = arr[inn.mask] > 0
                arr[inn.value] = np.where(m, (arr[inn.value] * stats[1] + stats[0] - mean) / std, 0.0)
                out[inn.group] = arr
        return out

    # ------------------------------------------------------------------ checkpoints
    def metadata(self, training: dict[str, Any] | None = None) -> CheckpointMeta:
        return CheckpointMeta(kind=self.kind, preset=self.preset, architecture=self.arch.to_dict(),
                              coords=self.coords, normalisation=self.norm, static_source=self.static_source,
                              obs_channels=self.obs_channels,
                              innovations=[i.to_dict() for i in self.module.innovations],
                              training=dict(training if training is not None else self.training))

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> "TorchAssimilator":
        meta = cls.read_checked_metadata(path)
        arch = meta.assimilator_arch()
        vs = meta.coords.variables
        state = cls.load_weights(path, meta)
        module = AnalysisModule(arch, len(vs.state_channels), meta.obs_channels, state["static"],
                                innovations=[Innovation.from_dict(d) for d in meta.innovations])
        load_into(module, state, str(path))
        check_normalisation(module, meta.normalisation, str(path))
        return cls(module, meta.coords, meta.normalisation, meta.preset, meta.static_source, device,
                   meta.training, str(path), meta.weights_sha256)


def load_torch_assimilator(path: str | Path, device: str = "cpu", **kwargs: Any) -> TorchAssimilator:
    """Registry factory of the ``torch`` runtime."""
    return TorchAssimilator.load(path, device=device, **kwargs)
