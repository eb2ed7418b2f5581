"""Stage 5: the assimilator adapts to the backgrounds of its own cycling (the closed loop).

Stages 2 and 3 train the assimilator on NWP-pool backgrounds and on chains of a
few cycles warm-started from them. Cycled for weeks on its own forecasts, the
pair drifts into states neither stage showed it, where its increments stop
correcting the background (bench/results/cycling_stability.md). Each round here
cycles the current pair on the training period exactly as operations do (own
6-hour forecasts, raw observations), keeps every background it met, and trains
the assimilator on them (labels: the reanalysis, plus L_obs) mixed with stage-2
samples. The next round cycles with the improved assimilator, so its backgrounds
follow what the network now does (data aggregation over rounds).

Backgrounds are kept on disk per round (``round_N/backgrounds.npy``, memory
mapped), so a round resumes without cycling again and memory stays bounded.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from fuxiops.errors import DataError
from fuxiops.logs import get_logger
from fuxiops.models.torch_assimilator import TorchAssimilator
from fuxiops.models.torch_forecaster import TorchForecaster
from fuxiops.models.training.config import TrainConfig
from fuxiops.models.training.engine import DistInfo, init_distributed, train
from fuxiops.models.training.losses import lat_weighted_l1, lat_weights_tensor
from fuxiops.models.training.stages import (H6, TrainingData, _clock, _hours, _latest, _obs_tensors, _provenance,
                                            _stage_dir, _t, _use_sim, analysis_loss)

log = get_logger("fuxiops.models.training")

#: Chains cycled together in one batch (bounded memory at any grid).
CHAIN_BATCH = 8


def chain_starts(data: TrainingData, n_chains: int, n_cycles: int, round_index: int) -> list[np.datetime64]:
    """Start times spread evenly over the training period, shifted by half a spacing each round so
    that rounds cycle through different weather. A start needs an NWP forecast valid at it and 6 h
    before (the cold start) and raw observations at every cycle of its chain."""
    pool = data.pool
    times = set(data.times)

    def usable(t0: np.datetime64) -> bool:
        chain = [t0 + _hours(6 * k) for k in range(n_cycles)]
        return pool.cold_start_lead(t0) is not None and pool.cold_start_lead(t0 - H6) is not None and \
            all(t in times and data.has_obs(t, ("raw",)) for t in chain)

    ok = [t for t in data.times if usable(t)]
    if not ok:
        raise DataError(f"no {n_cycles}-cycle stretch of the training period has raw observations at every "
                        "cycle and an NWP forecast to cold-start from")
    spacing = len(ok) / n_chains
    offset = (round_index % 2) * spacing / 2
    return sorted({ok[min(len(ok) - 1, int(offset + i * spacing))] for i in range(n_chains)})


@torch.no_grad()
def cycle_chains(fc: TorchForecaster, asm: TorchAssimilator, data: TrainingData, starts: Sequence[np.datetime64],
                 n_cycles: int, out: Path, progress: bool = True) -> dict[str, Any]:
    """Cycle the pair from each start for ``n_cycles`` cycles; write every background met
    (``out/backgrounds.npy``, ``out/times.npy``) and return the per-cycle errors against the
    reanalysis (latitude-weighted L1 in units of the channel std, the stage loss's scale)."""
    pool = data.pool
    groups = asm.obs_channels
    n_state = len(data.channels)
    std = asm.module.std
    wlat = lat_weights_tensor(data.grid.lat_weights)
    n = len(starts) * n_cycles
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    store = np.lib.format.open_memmap(tmp / "backgrounds.npy", mode="w+", dtype=np.float32,
                                      shape=(n, n_state, *data.grid.shape))
    times = np.empty(n, dtype="datetime64[ns]")
    bg_err = np.zeros((len(starts), n_cycles))
    ana_err = np.zeros((len(starts), n_cycles))
    fc.module.eval()
    asm.module.eval()
    t_start = time.perf_counter()
    bar = tqdm(total=n, desc="cycling own backgrounds", disable=not progress)
    for c0 in range(0, len(starts), CHAIN_BATCH):
        chunk = list(starts[c0:c0 + CHAIN_BATCH])
        # Cold start as operations (and the offline cycling) do: the NWP states valid at t0 and t0 - 6 h,
        # shortest lead, with the NWP model's own bias; the first cycles learn to take it out.
        bg = _t(np.stack([pool.cold_start(t) for t in chunk]))
        prev = _t(np.stack([pool.cold_start(t - H6) for t in chunk]))
        for k in range(n_cycles):
            ts = [t + _hours(6 * k) for t in chunk]
            obs, present = _obs_tensors(data, groups, ts, [False] * len(ts))
            ana = asm.module(bg, obs, present, _clock(ts))
            label = _t(data.reanalysis.stack(ts))
            for j, t in enumerate(ts):
                i = (c0 + j) * n_cycles + k
                store[i] = bg[j].numpy()
                times[i] = t
                bg_err[c0 + j, k] = float(lat_weighted_l1(bg[j:j + 1], label[j:j + 1], std, wlat))
                ana_err[c0 + j, k] = float(lat_weighted_l1(ana[j:j + 1], label[j:j + 1], std, wlat))
            nxt = fc.module(torch.stack([prev, ana], dim=1), _clock([t + H6 for t in ts]))[:, :n_state]
            prev, bg = ana, nxt
            bar.update(len(chunk))
    bar.close()
    store.flush()
    del store
    np.save(tmp / "times.npy", times)
    stats = {"chains": len(starts), "cycles": n_cycles, "starts": [str(t) for t in starts],
             "background_error_per_cycle": bg_err.mean(0).round(5).tolist(),
             "analysis_error_per_cycle": ana_err.mean(0).round(5).tolist(),
             "wall_seconds": round(time.perf_counter() - t_start, 3)}
    (tmp / "cycling.json").write_text(json.dumps(stats, indent=1))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return stats


class OwnBackgrounds:
    """The backgrounds one round's cycling met (memory mapped) and their valid times."""

    def __init__(self, folder: Path) -> None:
        self.array = np.load(folder / "backgrounds.npy", mmap_mode="r")
        self.times = np.load(folder / "times.npy")
        self.stats = json.loads((folder / "cycling.json").read_text())

    def __len__(self) -> int:
        return len(self.times)


def _summary(stats: dict[str, Any]) -> dict[str, float]:
    """First and last five cycles' mean errors: the drift the round's cycling showed."""
    bg, ana = np.asarray(stats["background_error_per_cycle"]), np.asarray(stats["analysis_error_per_cycle"])
    return {"background_error_first5": round(float(bg[:5].mean()), 5),
            "background_error_last5": round(float(bg[-5:].mean()), 5),
            "analysis_error_first5": round(float(ana[:5].mean()), 5),
            "analysis_error_last5": round(float(ana[-5:].mean()), 5)}


def _round_walls(rdir: Path) -> dict[str, float | None]:
    """Wall seconds of a round's cycling and training, from what it wrote (None: not recorded)."""
    own = json.loads((rdir / "own" / "cycling.json").read_text())
    metrics = rdir / "metrics.json"
    trained = json.loads(metrics.read_text()) if metrics.is_file() else {}
    wall = trained.get("wall_seconds")
    return {"cycling_seconds": own.get("wall_seconds"), "training_seconds": None if wall is None else round(wall, 3)}


def train_cycled(cfg: TrainConfig, info: DistInfo | None = None, progress: bool = True,
                 stop_after: int | None = None) -> Path:
    """Run the stage's rounds (each resumable); the final assimilator lands in ``out/cycled/assimilator``."""
    info = info or init_distributed()
    st = cfg.cycled
    out = _stage_dir(cfg, "cycled")
    if st.rounds == 0:
        log.info("cycled stage skipped (rounds: 0)")
        return out / "assimilator"
    data = TrainingData(cfg)
    fc = TorchForecaster.load(_latest(cfg, "forecaster", "cycled"))
    asm = TorchAssimilator.load(_latest(cfg, "assimilator", "cycled"))
    groups = asm.obs_channels
    pool = data.pool
    kinds = data.require_obs(cfg.assimilator.sim_fraction, "cycled") if st.nwp_fraction > 0 else ()
    nwp = [(t, lead) for t in data.times if data.has_obs(t, kinds) for lead in pool.leads_valid_at(t)] \
        if st.nwp_fraction > 0 else []
    targets, weights = data.insitu()
    std = asm.module.std
    wlat = lat_weights_tensor(data.grid.lat_weights)
    loss_fn = analysis_loss(targets, weights, std, wlat, st.obs_weight)
    rounds: list[dict[str, Any]] = []
    result = None
    for r in range(st.rounds):
        rdir = out / f"round_{r + 1}"
        if info.is_main and not (rdir / "own" / "cycling.json").is_file():
            cycle_chains(fc, asm, data, chain_starts(data, st.chains, st.chain_cycles, r), st.chain_cycles,
                         rdir / "own", progress)
        if info.world_size > 1:
            torch.distributed.barrier()
        own = [OwnBackgrounds(out / f"round_{i + 1}" / "own") for i in range(r + 1)]
        rounds.append({"round": r + 1, **_summary(own[-1].stats)})
        log.info("cycled round %d: own-background error %.4f (first 5 cycles) -> %.4f (last 5)", r + 1,
                 rounds[-1]["background_error_first5"], rounds[-1]["background_error_last5"])
        samples: list[tuple[Any, ...]] = [("own", i, j) for i, o in enumerate(own) for j in range(len(o))]
        n_own = len(samples)
        samples += [("nwp", t, lead) for t, lead in nwp]
        w = [(1 - st.nwp_fraction) / n_own] * n_own + [st.nwp_fraction / max(1, len(nwp))] * len(nwp)
        ckpt = rdir / "assimilator"
        if (ckpt / "metadata.json").is_file():
            asm = TorchAssimilator.load(ckpt)
            rounds[-1].update(_round_walls(rdir))
            continue

        def load(idx: Sequence[int], step: int, own: list[OwnBackgrounds] = own,
                 samples: list[tuple[Any, ...]] = samples) -> dict[str, Any]:
            picked = [samples[i] for i in idx]
            ts, bgs, sim = [], [], []
            for i, s in zip(idx, picked):
                if s[0] == "own":
                    src = own[s[1]]
                    ts.append(np.datetime64(src.times[s[2]], "ns"))
                    bgs.append(np.asarray(src.array[s[2]]))
                    sim.append(False)
                else:
                    ts.append(s[1])
                    bgs.append(pool.background(s[1], s[2]))
                    sim.append(_use_sim(cfg.seed, step, i, cfg.assimilator.sim_fraction))
            obs, present = _obs_tensors(data, groups, ts, sim)
            return {"bg": _t(np.stack(bgs)), "label": _t(data.reanalysis.stack(ts)), "obs": obs,
                    "present": present, "clock": _clock(ts)}

        result = train(asm.module.train(), loss_fn, len(samples), st.engine(cfg.seed + r), rdir,
                       f"cycled round {r + 1}", info, progress=progress, stop_after=stop_after, load_fn=load,
                       weights=w)
        if result.steps < st.total_steps:  # stopped early (stop_after): resume later
            return out / "assimilator"
        asm.module.eval()
        if info.is_main:
            asm.save(ckpt, training=_provenance(cfg, data, "cycled", result, asm.training))
        rounds[-1].update(_round_walls(rdir))
    if info.is_main:
        final = _provenance(cfg, data, "cycled", result, asm.training) if result else dict(asm.training)
        # The record describes the whole stage: this campaign, every round (also those of an earlier run).
        final["campaign"] = cfg.model_dump(mode="json")
        final["stages"]["cycled"].update(config=st.model_dump(mode="json"), rounds=rounds,
                                         steps=st.total_steps * st.rounds,
                                         wall_seconds=round(sum(r[k] or 0.0 for r in rounds
                                                                for k in ("cycling_seconds", "training_seconds")), 3))
        final["stages"]["cycled"]["forecaster"] = str(_latest(cfg, "forecaster", "cycled"))
        asm.save(out / "assimilator", training=final)
        (out / "rounds.json").write_text(json.dumps(rounds, indent=1))
    return out / "assimilator"
