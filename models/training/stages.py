"""The training stages of FuXiWeather2 (the paper's four and a closed-loop fifth) on top of the engine.

1. ``forecaster``: one-step pretraining, latitude-weighted L1 on reanalysis;
2. ``assimilator``: backgrounds from the offline NWP pool (6-180 h leads),
   raw/simulated observation mixture, labels = reanalysis (+ L_obs);
3. ``unroll``: K cycles of analysis -> forecast -> next background, warm-started
   from offline forecasts, gradients through both networks and through time;
   L_joint = L_state + L_obs on every analysis and every background;
4. ``finetune``: forecaster multi-step fine-tune, autoregressive steps growing;
5. ``cycled``: the assimilator adapts to the backgrounds of its own cycling with the
   final forecaster (``cycled.py``; off unless ``cycled.rounds`` > 0).

Each stage reads the previous stage's checkpoint, writes its own under
``out/<stage>/`` and records its provenance (configuration, data checksums,
wall time, metrics) in the checkpoint metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import xarray as xr
from torch.utils.checkpoint import checkpoint

from fuxiops import __version__
from fuxiops.errors import DataError
from fuxiops.logs import get_logger
from fuxiops.models.features import StaticFields, clock_features, static_fields
from fuxiops.models.normalisation import NormStats, compute_stats
from fuxiops.models.torch_assimilator import TorchAssimilator
from fuxiops.models.torch_forecaster import TorchForecaster
from fuxiops.models.training.config import TrainConfig
from fuxiops.models.training.data import (BackgroundPool, StateSeries, normalise_layout, open_gridded,
                                          open_state_store)
from fuxiops.models.training.engine import DistInfo, StageResult, init_distributed, train
from fuxiops.models.training.losses import lat_weighted_l1, lat_weights_tensor, obs_channel_weight, obs_loss

log = get_logger("fuxiops.models.training")

STAGES = ("forecaster", "assimilator", "unroll", "finetune", "cycled")
H6 = np.timedelta64(6, "h")


def _hours(n: int) -> np.timedelta64:
    return np.timedelta64(int(n), "h")


class TrainingData:
    """Everything the stages read, opened lazily from the world folder."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.variables = cfg.variable_set
        self.grid = cfg.grid_spec
        w = cfg.world_path
        self.channels = self.variables.state_channels
        ds = open_state_store(w / "reanalysis.zarr", self.variables, self.grid, "reanalysis")
        start, end = np.datetime64(cfg.train_period.start, "ns"), np.datetime64(cfg.train_period.end, "ns")
        if end <= start:
            raise DataError(f"train_period ends ({end}) before it starts ({start})")
        per_state = 4 * len(self.channels) * self.grid.shape[0] * self.grid.shape[1]
        self.reanalysis = StateSeries(ds, self.channels, cache_size=max(8, int(cfg.state_cache_gib * 2**30
                                                                                   // per_state)))
        self.times = [t for t in self.reanalysis.times if start <= t <= end]
        if not self.times:
            raise DataError(f"no reanalysis time in the training period {start} .. {end}")
        self._pool: BackgroundPool | None = None
        self.obs = {kind: open_gridded(w / "training" / f"gridded_{kind}.zarr") for kind in ("raw", "sim")}

    # ------------------------------------------------------------------ pieces
    @property
    def pool(self) -> BackgroundPool:
        if self._pool is None:
            p = self.cfg.world_path / "nwp.zarr"
            if not p.exists():
                raise DataError(f"the NWP background pool {p} does not exist (build the world first)")
            ds = normalise_layout(xr.open_zarr(p, consolidated=None, chunks=None))
            self._pool = BackgroundPool(ds, self.channels, self.cfg.assimilator.min_lead,
                                        self.cfg.assimilator.max_lead)
            if self.cfg.assimilator.debias_pool:
                self._pool.bias = self._pool_bias(self._pool)
        return self._pool

    def _pool_bias(self, pool: BackgroundPool) -> dict[int, np.ndarray]:
        """The pool's mean error against the reanalysis per lead over the training period, computed once
        per world and period (``training/nwp_bias.npz``)."""
        path = self.cfg.world_path / "training" / "nwp_bias.npz"
        key = f"{self.cfg.train_period.start}|{self.cfg.train_period.end}|{self.variables.state_names}"
        if path.is_file():
            with np.load(path) as f:
                if str(f["key"]) == key:
                    return {int(k[5:]): f[k] for k in f.files if k.startswith("lead_")}
        start, end = np.datetime64(self.cfg.train_period.start, "ns"), np.datetime64(self.cfg.train_period.end, "ns")
        bias = pool.estimate_bias(self.reanalysis, start, end, progress=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"nwp_bias.{os.getpid()}.tmp.npz")  # DDP ranks each write their own, then rename
        np.savez(tmp, key=np.array(key), **{f"lead_{k}": v for k, v in bias.items()})
        tmp.replace(path)
        log.info("NWP pool bias over %s .. %s written to %s", start, end, path)
        return bias

    def static(self) -> StaticFields:
        p = self.cfg.world_path / "static.zarr"
        if not p.exists():
            return static_fields(self.grid)
        st = xr.open_zarr(p, consolidated=None)
        oro = None
        for name in ("orography", "z_surface", "surface_geopotential", "z"):
            if name in st.data_vars:
                # Geopotential (m2 s-2) -> height (m); ``orography`` is already in metres.
                oro = st[name] / 9.80665 if name != "orography" else st[name]
                break
        lsm = st["lsm"] if "lsm" in st.data_vars else st.get("land_sea_mask")
        return static_fields(self.grid, orography=oro, lsm=lsm)

    def normalisation(self) -> NormStats:
        path = self.cfg.world_path / "training" / "normalisation.json"
        if path.is_file():
            return NormStats.from_dict(json.loads(path.read_text()))
        raise DataError(f"{path} does not exist: run `fuxiops train prepare` first")

    def obs_groups(self) -> dict[str, int]:
        for g in self.obs.values():
            if g is not None:
                return {k: v for k, v in g.n_channels().items() if k in self.cfg.obs_groups}
        raise DataError(f"no gridded observations under {self.cfg.world_path / 'training'}: run "
                        "`fuxiops train prepare` first")

    def obs_channel_names(self) -> dict[str, list[str]]:
        src = self.obs["raw"] or self.obs["sim"]
        return {} if src is None else {g: src.channels(g) for g in self.obs_groups()}

    def obs_at(self, t: np.datetime64, simulated: bool) -> dict[str, np.ndarray]:
        src = self.obs["sim" if simulated else "raw"]
        return {} if src is None else {g: a for g, a in src.at(t).items() if g in self.cfg.obs_groups}

    @staticmethod
    def obs_kinds(sim_fraction: float) -> tuple[str, ...]:
        """The gridded stores a stage draws from, given its share of simulated observations."""
        return ("raw",) if sim_fraction <= 0 else ("sim",) if sim_fraction >= 1 else ("raw", "sim")

    def require_obs(self, sim_fraction: float, stage: str) -> tuple[str, ...]:
        """The stores a stage needs, checked to exist (a missing one is an error, never a silent swap)."""
        kinds = self.obs_kinds(sim_fraction)
        missing = [k for k in kinds if self.obs[k] is None]
        if missing:
            raise DataError(f"{stage} (sim_fraction {sim_fraction}) needs gridded_{missing[0]}.zarr under "
                            f"{self.cfg.world_path / 'training'}: run `fuxiops train prepare` first")
        return kinds

    def has_obs(self, t: np.datetime64, kinds: Sequence[str] = ("raw", "sim")) -> bool:
        """Whether every store of ``kinds`` holds cycle ``t`` (a prepare may still be filling them)."""
        return all(self.obs[k] is not None and self.obs[k].has(t) for k in kinds)

    def insitu(self) -> tuple[list[Any], list[float]]:
        src = self.obs["raw"] or self.obs["sim"]
        if src is None:
            return [], []
        targets = src.insitu_targets(self.variables.state_names, self.cfg.insitu_groups)
        weights = [obs_channel_weight(self.channels[t.state_index]) for t in targets]
        return targets, weights

    def checksums(self) -> dict[str, str]:
        """sha256 of each store's metadata files: identifies the data a checkpoint was trained on."""
        out = {}
        for name in ("reanalysis.zarr", "nwp.zarr", "training/gridded_raw.zarr", "training/gridded_sim.zarr",
                     "training/normalisation.json"):
            p = self.cfg.world_path / name
            if not p.exists():
                continue
            h = hashlib.sha256()
            files = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file() and
                                                   x.name in ("zarr.json", ".zmetadata", ".zarray", ".zattrs"))
            for f in files:
                h.update(f.read_bytes())
            out[name] = h.hexdigest()
        return out


def prepare_normalisation(cfg: TrainConfig) -> NormStats:
    """Normalisation statistics from the reanalysis of the training period, written once."""
    data = TrainingData(cfg)
    ds = data.reanalysis.ds.sel(time=slice(data.times[0], data.times[-1]))
    chunks = (ds.isel(time=slice(i, i + 64)) for i in range(0, ds.sizes["time"], 64))
    stats = compute_stats(chunks, data.variables, data.grid)
    out = cfg.world_path / "training"
    out.mkdir(parents=True, exist_ok=True)
    (out / "normalisation.json").write_text(json.dumps(stats.to_dict()))
    return stats


# ---------------------------------------------------------------------------------------------
# Stage helpers
# ---------------------------------------------------------------------------------------------

def _clock(times: Sequence[np.datetime64]) -> torch.Tensor:
    return torch.from_numpy(np.stack([clock_features(t) for t in times]))


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _provenance(cfg: TrainConfig, data: TrainingData, stage: str, result: StageResult,
                previous: dict[str, Any] | None = None) -> dict[str, Any]:
    stages = dict((previous or {}).get("stages", {}))
    stages[stage] = {"steps": result.steps, "wall_seconds": round(result.wall_seconds, 1),
                     "samples_per_second": round(result.samples_per_second, 3), "final": result.final_metrics,
                     "config": getattr(cfg, stage).model_dump(mode="json") if hasattr(cfg, stage) else {}}
    obs_stats = cfg.world_path / "training" / "obs_normalisation.json"
    return {"campaign": cfg.model_dump(mode="json"), "data_sha256": data.checksums(), "stages": stages,
            # The fixed gridding statistics the assimilator learned with: the cycle must grid with them too.
            "obs_normalisation": json.loads(obs_stats.read_text()) if obs_stats.is_file() else None,
            "train_period": [str(data.times[0]), str(data.times[-1])], "n_times": len(data.times),
            "fuxiops_version": __version__, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _stage_dir(cfg: TrainConfig, stage: str) -> Path:
    return cfg.out_path / stage


def _latest(cfg: TrainConfig, kind: str, before: str | None) -> Path:
    """The newest checkpoint of ``kind`` written by one of the campaign's stages before ``before``
    (None: by any of them; a stage the campaign does not run, e.g. stage 5 at rounds 0, never counts)."""
    order = list(STAGES)
    runs = set(cfg.stages())
    for stage in reversed([s for s in (order[:order.index(before)] if before else order) if s in runs]):
        p = _stage_dir(cfg, stage) / kind
        if (p / "metadata.json").is_file():
            return p
    raise DataError(f"no {kind} checkpoint from an earlier stage under {cfg.out_path}; run that stage first")


# ---------------------------------------------------------------------------------------------
# Stage 1: forecaster pretraining
# ---------------------------------------------------------------------------------------------

def train_forecaster(cfg: TrainConfig, info: DistInfo | None = None, progress: bool = True,
                     stop_after: int | None = None) -> Path:
    info = info or init_distributed()
    data = TrainingData(cfg)
    fc = TorchForecaster.build(cfg.preset, data.variables, data.grid, data.normalisation(), data.static(),
                               seed=cfg.seed)
    module = fc.module.train()
    rean = data.reanalysis
    samples = [t for t in data.times if rean.has(t - H6) and rean.has(t + H6)]
    std = module.std
    wlat = lat_weights_tensor(data.grid.lat_weights)
    fc_n = len(data.channels)

    def load(idx: Sequence[int], step: int) -> dict[str, torch.Tensor]:
        ts = [samples[i] for i in idx]
        return {"x": _t(np.stack([rean.stack([t - H6, t]) for t in ts])),
                "y": _t(np.stack([rean.at(t + H6) for t in ts])), "clock": _clock([t + H6 for t in ts])}

    def loss_fn(model: torch.nn.Module, b: dict[str, torch.Tensor], step: int
                ) -> tuple[torch.Tensor, dict[str, float]]:
        pred = model(b["x"], b["clock"])
        return lat_weighted_l1(pred[:, :fc_n], b["y"], std, wlat), {}

    out = _stage_dir(cfg, "forecaster")
    result = train(module, loss_fn, len(samples), cfg.forecaster.engine(cfg.seed), out, "forecaster", info,
                   progress=progress, stop_after=stop_after, load_fn=load)
    if info.is_main and result.steps >= cfg.forecaster.total_steps:
        fc.module.eval()
        fc.save(out / "forecaster", training=_provenance(cfg, data, "forecaster", result))
    return out / "forecaster"


# ---------------------------------------------------------------------------------------------
# Stage 2: assimilator pretraining
# ---------------------------------------------------------------------------------------------

def _obs_tensors(data: TrainingData, groups: dict[str, int], ts: Sequence[np.datetime64], sim: Sequence[bool]
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Batched observation tensors and the presence flags (B, n_groups)."""
    h, w = data.grid.shape
    arrays = [data.obs_at(t, s) for t, s in zip(ts, sim)]
    tensors = {}
    present = torch.zeros(len(ts), len(groups))
    for gi, (g, n) in enumerate(groups.items()):
        stack = []
        for b, a in enumerate(arrays):
            if g in a:
                stack.append(a[g])
                present[b, gi] = 1.0
            else:
                stack.append(np.zeros((n, h, w), np.float32))
        tensors[g] = _t(np.stack(stack))
    return tensors, present


def _use_sim(seed: int, step: int, i: int, fraction: float) -> bool:
    if fraction <= 0:
        return False
    if fraction >= 1:
        return True
    return bool(np.random.default_rng([seed, step, i]).random() < fraction)


def analysis_loss(targets: Sequence[Any], weights: Sequence[float], std: torch.Tensor, wlat: torch.Tensor,
                  obs_weight: float) -> Callable[..., tuple[torch.Tensor, dict[str, float]]]:
    """The loss of one analysis per sample (stages 2 and 5): L_state vs the reanalysis label
    + ``obs_weight`` * L_obs at in-situ observation cells."""

    def loss_fn(model: torch.nn.Module, b: dict[str, Any], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        ana = model(b["bg"], b["obs"], b["present"], b["clock"])
        l_state = lat_weighted_l1(ana, b["label"], std, wlat)
        l_obs = obs_loss(ana, b["obs"], targets, std, wlat, weights) if obs_weight > 0 else ana.new_zeros(())
        with torch.no_grad():  # what the analysis has to beat: the background's own L_state
            l_bg = lat_weighted_l1(b["bg"], b["label"], std, wlat)
        return l_state + obs_weight * l_obs, {"loss_state": float(l_state.detach()),
                                                 "loss_obs": float(l_obs.detach()),
                                                 "loss_state_background": float(l_bg)}

    return loss_fn


class OwnForecasts:
    """The forecaster's own forecasts from the reanalysis, as stage-2 backgrounds (``own_fraction``).

    The NWP pool's errors are another model's: an assimilator that learns to correct them applies
    those corrections to the forecaster's backgrounds when it cycles. A forecast of ``lead`` hours
    valid at t starts from the reanalysis at t - lead - 6 h and t - lead, frozen weights, no gradient.
    """

    def __init__(self, forecaster: TorchForecaster, reanalysis: StateSeries, max_lead: int) -> None:
        self.module = forecaster.module.eval()
        self.reanalysis = reanalysis
        self.n_state = len(forecaster.coords.variables.state_channels)
        self.leads = list(range(6, max_lead + 1, 6))

    def leads_at(self, t: np.datetime64) -> list[int]:
        """Leads whose two reanalysis inputs exist."""
        return [lead for lead in self.leads
                if self.reanalysis.has(t - _hours(lead)) and self.reanalysis.has(t - _hours(lead + 6))]

    def background(self, t: np.datetime64, lead: int) -> np.ndarray:
        t0 = t - _hours(lead)
        x = torch.stack([_t(self.reanalysis.at(t0 - H6)), _t(self.reanalysis.at(t0))])[None]
        with torch.no_grad():
            for k in range(lead // 6):
                y = self.module(x, _clock([t0 + _hours(6 * (k + 1))]))[:, :self.n_state]
                x = torch.stack([x[:, 1], y], dim=1)
        return y[0].numpy()


def _own_lead(seed: int, step: int, i: int, fraction: float, leads: Sequence[int]) -> int | None:
    """The own-forecast lead of sample ``i`` at ``step`` (None: it takes its NWP-pool background)."""
    if fraction <= 0 or not leads:
        return None
    rng = np.random.default_rng([seed, step, i, 2])
    return int(rng.choice(leads)) if rng.random() < fraction else None


def train_assimilator(cfg: TrainConfig, info: DistInfo | None = None, progress: bool = True,
                      stop_after: int | None = None) -> Path:
    info = info or init_distributed()
    data = TrainingData(cfg)
    groups = data.obs_groups()
    asm = TorchAssimilator.build(cfg.preset, data.variables, data.grid, groups, data.normalisation(),
                                 data.static(), seed=cfg.seed + 1,
                                 channel_names=data.obs_channel_names() if cfg.assimilator.innovations else None,
                                 spread_km=cfg.assimilator.spread_km)
    module = asm.module.train()
    pool = data.pool
    kinds = data.require_obs(cfg.assimilator.sim_fraction, "assimilator")
    samples = [(t, lead) for t in data.times if data.has_obs(t, kinds) for lead in pool.leads_valid_at(t)]
    if not samples:
        raise DataError("no (time, background lead) pair with observations in the training period")
    targets, weights = data.insitu()
    std = module.std
    wlat = lat_weights_tensor(data.grid.lat_weights)
    st = cfg.assimilator
    own = OwnForecasts(TorchForecaster.load(_latest(cfg, "forecaster", "assimilator")), data.reanalysis,
                       st.own_max_lead) if st.own_fraction > 0 else None

    def background(t: np.datetime64, lead: int, step: int, i: int) -> np.ndarray:
        own_lead = _own_lead(cfg.seed, step, i, st.own_fraction, own.leads_at(t)) if own else None
        return pool.background(t, lead) if own_lead is None else own.background(t, own_lead)

    def load(idx: Sequence[int], step: int) -> dict[str, Any]:
        pairs = [samples[i] for i in idx]
        ts = [t for t, _ in pairs]
        sim = [_use_sim(cfg.seed, step, i, st.sim_fraction) for i in idx]
        obs, present = _obs_tensors(data, groups, ts, sim)
        return {"bg": _t(np.stack([background(t, lead, step, i) for i, (t, lead) in zip(idx, pairs)])),
                "label": _t(np.stack([data.reanalysis.at(t) for t in ts])), "obs": obs, "present": present,
                "clock": _clock(ts)}

    out = _stage_dir(cfg, "assimilator")
    loss_fn = analysis_loss(targets, weights, std, wlat, st.obs_weight)
    result = train(module, loss_fn, len(samples), st.engine(cfg.seed), out, "assimilator", info,
                   progress=progress, stop_after=stop_after, load_fn=load)
    if info.is_main and result.steps >= st.total_steps:
        asm.module.eval()
        asm.save(out / "assimilator", training=_provenance(cfg, data, "assimilator", result))
    return out / "assimilator"


# ---------------------------------------------------------------------------------------------
# Stage 3: recursive unrolling
# ---------------------------------------------------------------------------------------------

class CoupledSystem(torch.nn.Module):
    """Assimilator and forecaster trained together through the cycle."""

    def __init__(self, forecaster: torch.nn.Module, assimilator: torch.nn.Module, checkpointing: bool) -> None:
        super().__init__()
        self.forecaster = forecaster
        self.assimilator = assimilator
        self.checkpointing = checkpointing

    def forecast(self, x: torch.Tensor, clock: torch.Tensor) -> torch.Tensor:
        if self.checkpointing and self.training:
            return checkpoint(self.forecaster, x, clock, use_reentrant=False)
        return self.forecaster(x, clock)


def train_unroll(cfg: TrainConfig, info: DistInfo | None = None, progress: bool = True,
                 stop_after: int | None = None) -> Path:
    info = info or init_distributed()
    data = TrainingData(cfg)
    st = cfg.unroll
    fc = TorchForecaster.load(_latest(cfg, "forecaster", "unroll"))
    asm = TorchAssimilator.load(_latest(cfg, "assimilator", "unroll"))
    groups = asm.obs_channels
    system = CoupledSystem(fc.module, asm.module, st.checkpointing).train()
    pool = data.pool
    k = st.cycles
    lead = st.warm_lead
    n_state = len(data.channels)
    kinds = data.require_obs(st.sim_fraction, "unroll")

    def usable(t0: np.datetime64) -> bool:
        chain = [t0 + _hours(6 * i) for i in range(k + 1)]
        return pool.has_init(t0 - _hours(lead)) and data.reanalysis.has(chain[-1]) and \
            all(data.reanalysis.has(t) and data.has_obs(t, kinds) for t in chain[:-1])

    samples = [t for t in data.times if usable(t)]
    if not samples:
        raise DataError(f"no start time in the training period has a {k}-cycle chain with NWP warm starts at "
                        f"{lead} h and observations")
    targets, weights = data.insitu()
    std = fc.module.std
    wlat = lat_weights_tensor(data.grid.lat_weights)

    def load(idx: Sequence[int], step: int) -> dict[str, Any]:
        t0s = [samples[i] for i in idx]
        cycles = []
        for c in range(k):
            ts = [t + _hours(6 * c) for t in t0s]
            sim = [_use_sim(cfg.seed, step, i * 16 + c, st.sim_fraction) for i in idx]
            obs, present = _obs_tensors(data, groups, ts, sim)
            cycles.append({"obs": obs, "present": present, "clock": _clock(ts), "next_clock": _clock(
                [t + H6 for t in ts]), "label": _t(np.stack([data.reanalysis.at(t) for t in ts]))})
        # The background at t0 and the state at t0-6 h from the same offline forecast
        # (lead - 6; 0 is the NWP's own analysis).
        return {"bg": _t(np.stack([pool.forecast(t - _hours(lead), lead) for t in t0s])),
                "prev": _t(np.stack([pool.forecast(t - _hours(lead), lead - 6) for t in t0s])), "cycles": cycles,
                "final_label": _t(np.stack([data.reanalysis.at(t + _hours(6 * k)) for t in t0s]))}

    def loss_fn(model: torch.nn.Module, batch: dict[str, Any], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        b, prev = batch["bg"], batch["prev"]
        total = b.new_zeros(())
        l_states, l_obses = [], []
        for c, cyc in enumerate(batch["cycles"]):
            obs, label = cyc["obs"], cyc["label"]
            ana = model.assimilator(b, obs, cyc["present"], cyc["clock"])
            ls = lat_weighted_l1(ana, label, std, wlat)
            lo = obs_loss(ana, obs, targets, std, wlat, weights) if st.obs_weight > 0 else ana.new_zeros(())
            # The background of this cycle is scored too (it is the previous forecast).
            lsb = lat_weighted_l1(b, label, std, wlat) if c > 0 else b.new_zeros(())
            lob = obs_loss(b, obs, targets, std, wlat, weights) if (c > 0 and st.obs_weight > 0) else \
                b.new_zeros(())
            total = total + ls + st.obs_weight * lo + lsb + st.obs_weight * lob
            l_states.append(float(ls.detach()))
            l_obses.append(float(lo.detach()))
            fcst = model.forecast(torch.stack([prev, ana], dim=1), cyc["next_clock"])[:, :n_state]
            prev, b = ana, fcst
        # Final background scored against the reanalysis.
        total = total + lat_weighted_l1(b, batch["final_label"], std, wlat)
        return total / (2 * k), {"loss_state": float(np.mean(l_states)), "loss_obs": float(np.mean(l_obses))}

    out = _stage_dir(cfg, "unroll")
    result = train(system, loss_fn, len(samples), st.engine(cfg.seed), out, "unroll", info,
                   progress=progress, stop_after=stop_after, load_fn=load)
    if info.is_main and result.steps >= st.total_steps:
        system.eval()
        fc.save(out / "forecaster", training=_provenance(cfg, data, "unroll", result, fc.training))
        asm.save(out / "assimilator", training=_provenance(cfg, data, "unroll", result, asm.training))
    return out


# ---------------------------------------------------------------------------------------------
# Stage 4: multi-step fine-tune
# ---------------------------------------------------------------------------------------------

def rollout_steps(step: int, total: int, max_rollout: int) -> int:
    """Autoregressive steps at training step ``step``: grows linearly from 1 to ``max_rollout``."""
    if max_rollout <= 1:
        return 1
    return min(max_rollout, 1 + (step * max_rollout) // max(1, total))


def train_finetune(cfg: TrainConfig, info: DistInfo | None = None, progress: bool = True,
                   stop_after: int | None = None) -> Path:
    info = info or init_distributed()
    data = TrainingData(cfg)
    st = cfg.finetune
    fc = TorchForecaster.load(_latest(cfg, "forecaster", "finetune"))
    module = fc.module.train()
    rean = data.reanalysis
    n = st.max_rollout
    samples = [t for t in data.times if rean.has(t - H6) and all(rean.has(t + _hours(6 * i)) for i in range(1, n + 1))]
    if not samples:
        raise DataError(f"no time in the training period has {n} reanalysis states ahead for the fine-tune")
    std = module.std
    wlat = lat_weights_tensor(data.grid.lat_weights)
    n_state = len(data.channels)

    def load(idx: Sequence[int], step: int) -> dict[str, Any]:
        ts = [samples[i] for i in idx]
        valid = [[t + _hours(6 * s) for t in ts] for s in range(1, rollout_steps(step, st.total_steps, n) + 1)]
        return {"prev": _t(np.stack([rean.at(t - H6) for t in ts])), "cur": _t(np.stack([rean.at(t) for t in ts])),
                "clocks": [_clock(v) for v in valid], "labels": [_t(rean.stack(v)) for v in valid]}

    def loss_fn(model: torch.nn.Module, b: dict[str, Any], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        prev, cur = b["prev"], b["cur"]
        total = cur.new_zeros(())
        for clock, label in zip(b["clocks"], b["labels"]):
            x = torch.stack([prev, cur], dim=1)
            out = checkpoint(model, x, clock, use_reentrant=False) if st.checkpointing else model(x, clock)
            out = out[:, :n_state]
            total = total + lat_weighted_l1(out, label, std, wlat)
            prev, cur = cur, out
        steps = len(b["labels"])
        return total / steps, {"rollout_steps": float(steps)}

    out = _stage_dir(cfg, "finetune")
    result = train(module, loss_fn, len(samples), st.engine(cfg.seed), out, "finetune", info,
                   progress=progress, stop_after=stop_after, load_fn=load)
    if info.is_main and result.steps >= st.total_steps:
        module.eval()
        fc.save(out / "forecaster", training=_provenance(cfg, data, "finetune", result, fc.training))
    return out / "forecaster"


def train_cycled(cfg: TrainConfig, info: DistInfo | None = None, progress: bool = True,
                 stop_after: int | None = None) -> Path:
    """Stage 5 (``models/training/cycled.py``)."""
    from fuxiops.models.training.cycled import train_cycled as run

    return run(cfg, info, progress, stop_after)


STAGE_FUNCTIONS = {"forecaster": train_forecaster, "assimilator": train_assimilator, "unroll": train_unroll,
                   "finetune": train_finetune, "cycled": train_cycled}


def final_checkpoints(cfg: TrainConfig) -> dict[str, Path]:
    """The newest forecaster and assimilator of a campaign (what the cycle should use)."""
    return {"forecaster": _latest(cfg, "forecaster", None), "assimilator": _latest(cfg, "assimilator", None)}
