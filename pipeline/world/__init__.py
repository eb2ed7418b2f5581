"""The testbed world: a Held-Suarez nature run, an imperfect reanalysis and NWP, and BUFR observations.

Public API (heavy modules load on first use)::

    from fuxiops.pipeline.world import build_world, open_world
    world = build_world("w", start="2023-01-01T00", days=2, grid="2.8125deg", seed=7)
    world.truth, world.reanalysis, world.nwp, world.static      # xarray Datasets (Zarr)
    world.obs_files("raw", "synop")                              # BUFR paths
    world.background_pool(6, 180)                                # NWP backgrounds at 6-180 h

See docs/world.md for the physics, the error models and the seed scheme.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from fuxiops.pipeline.world.build import World, WorldSpec, build_world, open_world

__all__ = ["World", "WorldSpec", "build_world", "open_world", "OBS_TYPES"]


def __getattr__(name: str) -> Any:
    if name in ("World", "WorldSpec", "build_world", "open_world", "OBS_TYPES", "WorldError", "parse_start"):
        from fuxiops.pipeline.world import build
        return getattr(build, name)
    raise AttributeError(name)
