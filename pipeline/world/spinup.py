"""Spin-up of the truth core from rest and the shipped library of spun-up states.

Held-Suarez needs a few hundred days from rest before its climate is steady
(the free-atmosphere radiative time scale is 40 days). Two ways:

* ``run_spinup`` (used for the shipped states: 480 days, 240 discarded, one
  every 30): the truth core itself (T42 L20) from rest; resumable; after
  ``discard_days`` keeps a state every ``keep_every_days`` (about 4.5 CPU-s
  per simulated day);
* ``run_spinup_two_stage`` (quick experiments): the slow climate
  adjustment runs at T21 L20 (same sigma levels, 60-minute steps, ~20 times
  cheaper), then every kept T21 state is mapped to T42 (zero-padded spectrum)
  and integrated ``adjust_days`` at T42 so that the small scales and the T42
  eddy statistics re-establish themselves.

Kept states are ``keep_every_days`` apart (far longer than the ~10-day
predictability of Held-Suarez weather), so they share no weather. They are
shipped in ``pipeline/world/data/`` and seeds pick among them (see
:mod:`fuxiops.pipeline.world.seeds`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from fuxiops.pipeline.world.model import CoreConfig, HeldSuarezCore, ModelState, TRUTH_CORE

DATA_DIR = Path(__file__).resolve().parent / "data"


#: Environment variable naming another folder of spun-up states (e.g. from `fuxiops world spinup`).
STATES_ENV = "FUXIOPS_WORLD_STATES"


def shipped_state_paths(config: CoreConfig = TRUTH_CORE) -> list[Path]:
    """Spun-up states for a core configuration, in run order (``$FUXIOPS_WORLD_STATES`` or the shipped ones)."""
    tag = f"T{config.truncation}L{config.layers}"
    folder = Path(os.environ.get(STATES_ENV) or DATA_DIR)
    return sorted(folder.glob(f"spunup_{tag}_day*.npz"))


def jet_summary(core: HeldSuarezCore, s: ModelState) -> dict[str, float]:
    """Zonal-mean zonal wind maxima near 250 hPa (sigma ~0.25) per hemisphere, and the T range."""
    f = core.nodal(s)
    k = int(np.argmin(np.abs(f.sigma - 0.25)))
    um = f.u[k].mean(axis=-1)
    nh, sh = f.lat > 0, f.lat < 0
    return {"u_max_nh": float(um[nh].max()), "lat_max_nh": float(f.lat[nh][np.argmax(um[nh])]),
            "u_max_sh": float(um[sh].max()), "lat_max_sh": float(f.lat[sh][np.argmax(um[sh])]),
            "t_min": float(f.t.min()), "t_max": float(f.t.max())}


def run_spinup(work: Path, total_days: int = 600, discard_days: int = 300, keep_every_days: int = 40,
               config: CoreConfig = TRUTH_CORE, out_dir: Path = DATA_DIR,
               log: Callable[[str], None] = print) -> list[Path]:
    """Integrate from rest for ``total_days``, keeping states after ``discard_days``; resumable."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    core = HeldSuarezCore(config)
    ckpt = work / "checkpoint.npz"
    if ckpt.exists():
        s, meta = ModelState.load(ckpt)
        day = int(meta["day"])
    else:
        s, day = core.rest_state(seed=0), 0
    tag = f"T{config.truncation}L{config.layers}"
    kept: list[Path] = []
    t0 = time.time()
    while day < total_days:
        s = core.advance(s, windows=4 * 5)
        day += 5
        s.save(ckpt, day=day)
        if day % 10 == 0:
            js = jet_summary(core, s)
            log(json.dumps({"day": day, "wall_s": round(time.time() - t0, 1), **{k: round(v, 2) for k, v in js.items()}}))
        if day >= discard_days and (day - discard_days) % keep_every_days == 0:
            path = out_dir / f"spunup_{tag}_day{day:04d}.npz"
            s.save(path, day=day, config=json.dumps(config.to_dict()))
            kept.append(path)
            log(f"kept {path.name}")
    return kept


def run_spinup_two_stage(work: Path, total_days: int = 320, discard_days: int = 200, keep_every_days: int = 20,
                         adjust_days: int = 8, config: CoreConfig = TRUTH_CORE, out_dir: Path = DATA_DIR,
                         log: Callable[[str], None] = print) -> list[Path]:
    """Spin up at T21 (same layers) from rest, then map kept states to ``config`` and adjust; resumable."""
    import dataclasses
    from fuxiops.pipeline.world.model import transfer_state
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    coarse_cfg = dataclasses.replace(config, truncation=21, dt_minutes=60.0)
    coarse = HeldSuarezCore(coarse_cfg)
    fine: HeldSuarezCore | None = None
    ckpt = work / "checkpoint_t21.npz"
    if ckpt.exists():
        s, meta = ModelState.load(ckpt)
        day = int(meta["day"])
    else:
        s, day = coarse.rest_state(seed=0), 0
    tag = f"T{config.truncation}L{config.layers}"
    kept: list[Path] = []
    t0 = time.time()
    while day < total_days:
        s = coarse.advance(s, windows=4 * 10)
        day += 10
        s.save(ckpt, day=day)
        js = jet_summary(coarse, s)
        log(json.dumps({"stage": "T21", "day": day, "wall_s": round(time.time() - t0, 1),
                        **{k: round(v, 2) for k, v in js.items()}}))
        if day >= discard_days and (day - discard_days) % keep_every_days == 0:
            path = out_dir / f"spunup_{tag}_day{day:04d}.npz"
            if path.exists():
                continue
            fine = fine or HeldSuarezCore(config)
            x = fine.advance(transfer_state(s, coarse_cfg, config), windows=4 * adjust_days)
            x.save(path, day=day, config=json.dumps(config.to_dict()),
                   method=f"T21 spin-up to day {day}, then {adjust_days} days at T{config.truncation}")
            js = jet_summary(fine, x)
            log(json.dumps({"stage": f"T{config.truncation}", "kept": path.name,
                            **{k: round(v, 2) for k, v in js.items()}}))
            kept.append(path)
    return kept


if __name__ == "__main__":  # pragma: no cover - operator entry point (also `fuxiops world spinup`)
    import argparse
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--days", type=int, default=600)
    ap.add_argument("--discard", type=int, default=300)
    ap.add_argument("--every", type=int, default=40)
    ap.add_argument("--two-stage", action="store_true", help="spin up at T21, then adjust kept states at T42")
    ap.add_argument("--adjust", type=int, default=8)
    a = ap.parse_args()
    if a.two_stage:
        run_spinup_two_stage(a.work, a.days, a.discard, a.every, a.adjust, log=lambda m: print(m, flush=True))
    else:
        run_spinup(a.work, a.days, a.discard, a.every, log=lambda m: print(m, flush=True))
