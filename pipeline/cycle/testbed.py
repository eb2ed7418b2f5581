"""The cycle in the testbed world: build (or reuse) the world and deliver its observations per cycle.

In production, observation files arrive in ``{observations}/{run_id}/`` from
the data feeds. In the testbed the world writes one BUFR file per type and
hour (``{world}/obs/raw/YYYYMMDDHH/``); "arrival" links the hours of a cycle's
assimilation window into the cycle's folder (hard links: no copy, and the
world's files are never modified).
"""

from __future__ import annotations

import math
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

from fuxiops.config import FuxiopsConfig
from fuxiops.logs import get_logger
from fuxiops.pipeline.cycle.times import run_id

log = get_logger("fuxiops.cycle.testbed")


def world_root(cfg: FuxiopsConfig) -> Path:
    return Path(cfg.location("world"))


def world_ready(cfg: FuxiopsConfig) -> bool:
    """True when a complete world of this deployment's grid exists under ``data.world``."""
    root = world_root(cfg)
    if not (root / "world.json").is_file():
        return False
    from fuxiops.pipeline.world.build import open_world

    w = open_world(root)
    return bool(w.complete) and w.spec.grid == cfg.grid


def ensure_world(cfg: FuxiopsConfig, progress: Callable[[int, int, str], None] | None = None) -> Path:
    """Build the testbed world of the configuration (``world`` section) unless it is already complete.

    The world build resumes where an interrupted one stopped.
    """
    root = world_root(cfg)
    if world_ready(cfg):
        return root
    from fuxiops.pipeline.world.build import build_world

    days = max(1, math.ceil(cfg.world.days))
    log.info("building the testbed world (%d days on %s, seed %d) in %s", days, cfg.grid, cfg.world.seed, root)
    build_world(root, start=cfg.world.start, days=days, grid=cfg.grid, seed=cfg.world.seed, progress=progress)
    return root


def window_hours(cfg: FuxiopsConfig) -> tuple[float, float]:
    """The widest assimilation window over report types, hours relative to the cycle time."""
    w = cfg.observations.window_hours.values()
    return min(a for a, _ in w), max(b for _, b in w)


def deliver_observations(cfg: FuxiopsConfig, cycle_time: datetime, kind: str = "raw") -> int:
    """Link the world's observation files of the cycle's window into ``{observations}/{run_id}/``.

    Returns the number of files delivered (0 when the world has none for that window).
    """
    src_root = world_root(cfg) / "obs" / kind
    dst = Path(cfg.location("observations")) / run_id(cycle_time)
    lo, hi = window_hours(cfg)
    n = 0
    h = math.floor(lo)
    while h < hi:
        hour = cycle_time + timedelta(hours=h)
        folder = src_root / hour.strftime("%Y%m%d%H")
        if folder.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
            for f in sorted(folder.iterdir()):
                if f.is_file():
                    target = dst / f.name
                    if not target.exists():
                        try:
                            os.link(f, target)
                        except OSError:  # another filesystem: copy instead
                            shutil.copy2(f, target)
                    n += 1
        h += 1
    return n
