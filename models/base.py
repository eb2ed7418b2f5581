"""The forecaster and assimilator interfaces every implementation (torch, ONNX, wrappers) follows.

A :class:`Forecaster` declares its coordinates (variable set, grid, time step,
input times), checks what it is given, advances the state one step on channel
arrays in physical units, and turns that into a streaming :meth:`~Forecaster.rollout`
generator over labelled xarray states. An :class:`Assimilator` turns a background
and gridded observations into an analysis. Runtimes register under a name in
:data:`FORECASTER_RUNTIMES` / :data:`ASSIMILATOR_RUNTIMES`; :func:`load_forecaster`
picks one from a path (checkpoint directory, ``.onnx`` file) or ``"default"``.

This module imports no torch: flows and the API can type-check against it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import xarray as xr

from fuxiops.catalog import VariableSet
from fuxiops.errors import DataError, FuxiopsError, GridError
from fuxiops.grids import Grid, get_grid
from fuxiops.registry import Registry
from fuxiops.state import LAT, LEVEL, LON, check_dataset, from_channels, to_channels

#: Folder of the checkpoints shipped with the package: ``checkpoints/<grid>/{forecaster,assimilator}/``.
SHIPPED_CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"

TIME = "time"
STEP = "step"
VALID_TIME = "valid_time"


class CheckpointError(FuxiopsError):
    """A checkpoint that is missing, corrupt or incompatible with what it is used for."""


@dataclass(frozen=True)
class ModelCoords:
    """What a network reads and writes: variables, grid, time step and input times.

    ``input_offsets_hours`` are the input times relative to the latest one
    (FuXi: ``(-6, 0)``, i.e. x_{t-6h} and x_t).
    """

    variables: VariableSet
    grid: Grid
    step_hours: int = 6
    input_offsets_hours: tuple[int, ...] = (-6, 0)

    @property
    def n_inputs(self) -> int:
        return len(self.input_offsets_hours)

    def to_dict(self) -> dict[str, Any]:
        return {"variables": self.variables.to_dict(), "grid": self.grid.name,
                "step_hours": self.step_hours, "input_offsets_hours": list(self.input_offsets_hours)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelCoords":
        return cls(VariableSet.from_dict(d["variables"]), get_grid(d["grid"]), int(d["step_hours"]),
                   tuple(int(x) for x in d["input_offsets_hours"]))

    def check_compatible(self, other: "ModelCoords", what: str = "model") -> None:
        """Raise naming the first difference between two coordinate declarations."""
        if self.grid != other.grid:
            raise GridError(f"{what} is on grid {other.grid.name!r} {other.grid.shape}, "
                            f"expected {self.grid.name!r} {self.grid.shape}")
        if self.variables != other.variables:
            raise DataError(f"{what} has variables {other.variables.to_dict()}, expected {self.variables.to_dict()}")
        if self.step_hours != other.step_hours or self.input_offsets_hours != other.input_offsets_hours:
            raise DataError(f"{what} steps {other.step_hours} h from inputs at {other.input_offsets_hours} h, "
                            f"expected {self.step_hours} h from {self.input_offsets_hours} h")


def _hours(delta: np.timedelta64) -> float:
    return float(delta / np.timedelta64(1, "h"))


def check_state(ds: xr.Dataset, coords: ModelCoords, what: str = "state") -> None:
    """Check variables, levels and grid of a state dataset against declared coordinates."""
    for dim in (LAT, LON):
        if dim not in ds.coords:
            raise DataError(f"{what} has no {dim!r} coordinate (dims: {dict(ds.sizes)})")
    check_dataset(ds, coords.variables, coords.grid, what)


def select_inputs(ds: xr.Dataset, coords: ModelCoords, time: np.datetime64 | str | None = None,
                  what: str = "initial state") -> xr.Dataset:
    """The input times of a forecast valid at ``time`` (default: the last time of ``ds``), checked.

    Returns a dataset with a ``time`` dim holding exactly the declared input times, oldest first.
    """
    check_state(ds, coords, what)
    if TIME not in ds.dims:
        raise DataError(f"{what} needs a 'time' dimension with {coords.n_inputs} times "
                        f"{list(coords.input_offsets_hours)} h apart; dims are {dict(ds.sizes)}")
    times = ds[TIME].values.astype("datetime64[ns]")
    t0 = times.max() if time is None else np.datetime64(time, "ns")
    want = [t0 + np.timedelta64(h, "h") for h in coords.input_offsets_hours]
    missing = [str(t) for t in want if t not in set(times)]
    if missing:
        raise DataError(f"{what} lacks input time(s) {missing} (the model needs times at "
                        f"{list(coords.input_offsets_hours)} h relative to {t0}); it has {_describe_times(times)}")
    # Only what the model reads: other variables of the store (and their gaps) are not its business.
    keep = list(coords.variables.upper_air) + list(coords.variables.surface)
    out = ds[keep].sel({TIME: want})
    if coords.variables.upper_air and LEVEL in out.dims:
        out = out.sel({LEVEL: list(coords.variables.levels)})
    out = out.load()  # two states: read once (lazy stores), check, then use
    for name in out.data_vars:
        vals = out[name].values
        if not np.all(np.isfinite(vals)):
            raise DataError(f"{what}: variable {name!r} has non-finite values at the input times")
    return out


def _describe_times(times: np.ndarray) -> str:
    shown = [str(t.astype("datetime64[s]")) for t in times]
    if len(shown) <= 6:
        return ", ".join(shown)
    return f"{len(shown)} times from {shown[0]} to {shown[-1]}"


def make_state(array: np.ndarray, coords: ModelCoords, reference_time: np.datetime64, step_hours: int,
               diagnostics: bool = True, attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """A state dataset with scalar ``time`` (reference time), ``step`` (hours) and ``valid_time``.

    ``array`` is ``(C, lat, lon)`` in output-channel order (state channels plus diagnostics
    when ``diagnostics``), or state channels only (diagnostics then filled with NaN: at the
    initial step an accumulation over the previous 6 h is not known).
    """
    vs = coords.variables
    chans = vs.output_channels if diagnostics else vs.state_channels
    n_state, n_out = len(vs.state_channels), len(vs.output_channels)
    if array.shape[0] == n_state and n_out > n_state:
        pad = np.full((n_out - n_state, *array.shape[1:]), np.nan, dtype=array.dtype)
        array = np.concatenate([array, pad], axis=0)
        chans = vs.output_channels
    ds = from_channels(array, chans, coords.grid, attrs=dict(attrs or {}))
    ref = np.datetime64(reference_time, "ns")
    ds = ds.assign_coords({TIME: ref, STEP: np.int64(step_hours),
                           VALID_TIME: ref + np.timedelta64(int(step_hours), "h")})
    ds[STEP].attrs.update({"units": "hours", "long_name": "forecast lead time"})
    return ds


class Forecaster(ABC):
    """A network that advances the state one step; wrappers and runtimes are forecasters too.

    Subclasses implement :meth:`step` on channel arrays in physical units;
    :meth:`rollout` (autoregression over labelled states) is shared.
    """

    #: Short identity written into products (``model`` attribute).
    name: str = "forecaster"

    @property
    @abstractmethod
    def coords(self) -> ModelCoords:
        """Declared input/output coordinates."""

    @abstractmethod
    def step(self, inputs: np.ndarray, time: np.datetime64) -> np.ndarray:
        """One step: ``inputs`` ``(n_inputs, C_state, lat, lon)`` float32, physical units, oldest first,
        the latest valid at ``time``; returns ``(C_out, lat, lon)`` valid at ``time + step_hours``
        (state channels then diagnostics)."""

    def provenance(self) -> dict[str, Any]:
        """What produced this forecast (checkpoint, sha256, runtime); written into products."""
        return {"name": self.name}

    def check_inputs_array(self, inputs: np.ndarray) -> None:
        c = self.coords
        want = (c.n_inputs, len(c.variables.state_channels), *c.grid.shape)
        if tuple(inputs.shape) != want:
            raise DataError(f"forecaster input array has shape {tuple(inputs.shape)}, expected {want} "
                            f"(inputs, state channels, lat, lon on grid {c.grid.name!r})")

    def rollout(self, initial: xr.Dataset, steps: int, time: np.datetime64 | str | None = None
                ) -> Iterator[xr.Dataset]:
        """Yield the initial state (step 0) then each lead (step 6, 12, ...) one at a time.

        ``initial`` holds the input times (default: the last time in it is the
        reference time). Only the current input window is kept, so memory does
        not grow with ``steps``.
        """
        if steps < 0:
            raise DataError(f"steps must be >= 0, got {steps}")
        self._check_offsets()
        c = self.coords
        ds = select_inputs(initial, c, time)
        ref = ds[TIME].values[-1]
        window = to_channels(ds, c.variables.state_channels)  # (n_inputs, C, lat, lon)
        n_state = len(c.variables.state_channels)
        attrs = {"model": self.name}
        yield make_state(window[-1], c, ref, 0, attrs=attrs)
        for k in range(1, steps + 1):
            t = ref + np.timedelta64((k - 1) * c.step_hours, "h")
            out = self.step(window, t)
            if not np.all(np.isfinite(out)):
                raise DataError(f"{self.name}: non-finite values at step {k * c.step_hours} h")
            # Drop the oldest input; the new state becomes the latest (assumes input offsets
            # are one step apart, which _check_offsets guarantees for rollout).
            window = np.concatenate([window[1:], out[None, :n_state]], axis=0)
            yield make_state(out, c, ref, k * c.step_hours, attrs=attrs)
            del out

    def _check_offsets(self) -> None:
        c = self.coords
        exp = tuple(-c.step_hours * i for i in range(c.n_inputs - 1, -1, -1))
        if c.input_offsets_hours != exp:
            raise DataError(f"autoregressive rollout needs inputs one step apart {exp}, got {c.input_offsets_hours}")


class ForecasterWrapper(Forecaster):
    """Base of wrappers that are forecasters themselves (STYLE.md lesson 5): delegates everything to
    ``inner``; subclasses override :meth:`step` (e.g. casting, ensembles, bounds checks)."""

    def __init__(self, inner: Forecaster) -> None:
        self.inner = inner
        self.name = inner.name

    @property
    def coords(self) -> ModelCoords:
        return self.inner.coords

    def step(self, inputs: np.ndarray, time: np.datetime64) -> np.ndarray:
        return self.inner.step(inputs, time)

    def provenance(self) -> dict[str, Any]:
        return {**self.inner.provenance(), "wrapped_by": type(self).__name__}


class BoundsCheckedForecaster(ForecasterWrapper):
    """Stops a rollout whose output leaves the catalog's physical bounds (a diverging model must not
    publish), naming the channel, the step's valid time and the value."""

    def step(self, inputs: np.ndarray, time: np.datetime64) -> np.ndarray:
        out = self.inner.step(inputs, time)
        for i, ch in enumerate(self.coords.variables.output_channels):
            v = ch.variable
            lo, hi = float(np.min(out[i])), float(np.max(out[i]))
            if lo < v.valid_min or hi > v.valid_max:
                valid = np.datetime64(time, "ns") + np.timedelta64(self.coords.step_hours, "h")
                raise DataError(f"{self.name}: {ch.name} at {valid.astype('datetime64[s]')} is outside its physical bounds "
                                f"[{v.valid_min:g}, {v.valid_max:g}] {v.units} (min {lo:g}, max {hi:g})")
        return out


class Assimilator(ABC):
    """A network that makes an analysis from a background and gridded observations.

    Observations are the gridded-observation dataset of the ingest layer: per
    observation group ``g`` a data variable ``g`` with dims (``g_channel``,
    latitude, longitude) holding normalised values (zero where empty) and
    availability flags. Groups the network knows but the dataset lacks are
    masked out, not errors.
    """

    name: str = "assimilator"

    @property
    @abstractmethod
    def coords(self) -> ModelCoords:
        """Declared coordinates of background and analysis (input_offsets_hours = (0,))."""

    @property
    @abstractmethod
    def obs_channels(self) -> dict[str, int]:
        """Observation groups the network reads and their channel counts."""

    @abstractmethod
    def analyse(self, background: xr.Dataset, observations: xr.Dataset | None,
                time: np.datetime64 | str) -> xr.Dataset:
        """The analysis at ``time`` (a state dataset with scalar ``time``) from the background valid then."""

    def provenance(self) -> dict[str, Any]:
        return {"name": self.name}


def obs_group_arrays(observations: xr.Dataset | None, obs_channels: Mapping[str, int], grid: Grid
                     ) -> dict[str, np.ndarray | None]:
    """Per known group, its ``(channels, lat, lon)`` float32 array, or None when absent (masked).

    Wrong channel counts and wrong grids are errors naming the group; extra
    groups the network was not trained on are ignored (they cannot be used).
    """
    out: dict[str, np.ndarray | None] = {g: None for g in obs_channels}
    if observations is None:
        return out
    if len(observations.data_vars):
        grid.check_coords(observations[LAT].values, observations[LON].values, "observations")
    for g, n in obs_channels.items():
        if g not in observations.data_vars:
            continue
        da = observations[g]
        cdim = f"{g}_channel"
        if cdim not in da.dims:
            raise DataError(f"observation group {g!r} has dims {da.dims}, expected ({cdim!r}, {LAT!r}, {LON!r})")
        da = da.transpose(cdim, LAT, LON)
        if da.sizes[cdim] != n:
            raise DataError(f"observation group {g!r} has {da.sizes[cdim]} channels, the assimilator was "
                            f"built for {n}")
        arr = np.asarray(da.values, dtype=np.float32)
        out[g] = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    return out


# ---------------------------------------------------------------------------------------------
# Runtimes and loading
# ---------------------------------------------------------------------------------------------

#: Forecaster runtimes: factory(path: Path, device: str) -> Forecaster.
FORECASTER_RUNTIMES: Registry[Forecaster] = Registry("forecaster runtime")
FORECASTER_RUNTIMES.register("torch", "fuxiops.models.torch_forecaster:load_torch_forecaster",
                             install_hint="pip install 'fuxiops[ml]'")
# ONNX Runtime forecaster (fuxiops.compression): factory load_onnx_forecaster(path, device=...).
FORECASTER_RUNTIMES.register("onnx", "fuxiops.compression.onnx_runtime:load_onnx_forecaster",
                             install_hint="pip install onnxruntime (or onnxruntime-gpu)")
#: Assimilator runtimes: factory(path: Path, device: str) -> Assimilator.
ASSIMILATOR_RUNTIMES: Registry[Assimilator] = Registry("assimilator runtime")
ASSIMILATOR_RUNTIMES.register("torch", "fuxiops.models.torch_assimilator:load_torch_assimilator",
                              install_hint="pip install 'fuxiops[ml]'")


def default_checkpoint(grid: Grid | str, kind: str = "forecaster") -> Path:
    """The shipped checkpoint directory for a grid, or a CheckpointError saying none exists."""
    gname = grid.name if isinstance(grid, Grid) else get_grid(grid).name
    path = SHIPPED_CHECKPOINTS / gname / kind
    if not (path / "metadata.json").is_file():
        have = sorted(p.parent.name for p in SHIPPED_CHECKPOINTS.glob(f"*/{kind}/metadata.json"))
        raise CheckpointError(f"no default {kind} checkpoint is shipped for grid {gname!r} "
                              f"(looked in {path}); shipped for: {', '.join(have) or 'no grid yet'}. "
                              f"Pass a checkpoint path explicitly.")
    return path


def runtime_of(path: Path) -> str:
    """The runtime name for a checkpoint path: ``.onnx`` files -> ``onnx``; directories say it in
    ``metadata.json`` (``runtime``, default ``torch``)."""
    if path.suffix == ".onnx":
        return "onnx"
    meta = path / "metadata.json"
    if path.is_dir() and meta.is_file():
        try:
            return str(json.loads(meta.read_text()).get("runtime", "torch"))
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{meta} is not valid JSON: {e}") from None
    raise CheckpointError(f"{path} is neither a checkpoint directory (with metadata.json) nor an .onnx file")


def resolve_checkpoint(path: str | Path, grid: Grid | str | None, kind: str) -> Path:
    if str(path) == "default":
        if grid is None:
            raise CheckpointError(f"the default {kind} depends on the grid; none was given")
        return default_checkpoint(grid, kind)
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"{kind} checkpoint {p} does not exist")
    return p


def load_forecaster(path: str | Path = "default", device: str = "cpu", grid: Grid | str | None = None,
                    runtime: str | None = None) -> Forecaster:
    """A forecaster from a checkpoint directory, an ``.onnx`` file, or ``"default"`` (needs ``grid``).

    When ``grid`` is given the loaded model must be on it.
    """
    p = resolve_checkpoint(path, grid, "forecaster")
    name = runtime or runtime_of(p)
    fc = FORECASTER_RUNTIMES.get(name)(p, device=device)
    _check_grid(fc.coords, grid, f"forecaster {p}")
    return fc


def load_assimilator(path: str | Path = "default", device: str = "cpu", grid: Grid | str | None = None,
                     runtime: str | None = None) -> Assimilator:
    """An assimilator from a checkpoint directory or ``"default"`` (needs ``grid``)."""
    p = resolve_checkpoint(path, grid, "assimilator")
    name = runtime or runtime_of(p)
    asm = ASSIMILATOR_RUNTIMES.get(name)(p, device=device)
    _check_grid(asm.coords, grid, f"assimilator {p}")
    return asm


def _check_grid(coords: ModelCoords, grid: Grid | str | None, what: str) -> None:
    """A loaded network must be on the deployment's grid (when one is given)."""
    if grid is None:
        return
    g = grid if isinstance(grid, Grid) else get_grid(grid)
    if coords.grid != g:
        raise CheckpointError(f"{what} is for grid {coords.grid.name!r}, the deployment uses {g.name!r}")


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; other names pass through."""
    if device != "auto":
        return device
    try:
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


__all__ = ["ModelCoords", "Forecaster", "ForecasterWrapper", "BoundsCheckedForecaster", "Assimilator", "CheckpointError", "FORECASTER_RUNTIMES",
           "ASSIMILATOR_RUNTIMES", "load_forecaster", "load_assimilator", "default_checkpoint", "make_state",
           "select_inputs", "check_state", "obs_group_arrays", "resolve_device", "TIME", "STEP", "VALID_TIME",
           "LEVEL"]
