"""Coastlines for maps, derived from the land mask shipped inside the ``global_land_mask`` package.

The package's 1/120-degree GLOBE land mask is subsampled to 0.1 degree and
contoured at 0.5 (contourpy) once; the line segments are cached as ``.npz``
under the user cache directory so that later processes load them in
milliseconds. No download ever happens at run time.
"""

from __future__ import annotations

import importlib.metadata as md
import threading
from pathlib import Path

import numpy as np
from platformdirs import user_cache_dir

STRIDE = 12  # 1/120 deg * 12 = 0.1 deg
_lock = threading.Lock()
_segments: list[np.ndarray] | None = None


def _cache_file() -> Path:
    try:
        ver = md.version("global-land-mask")
    except md.PackageNotFoundError:  # pragma: no cover - the package is a dependency
        ver = "unknown"
    return Path(user_cache_dir("fuxiops", appauthor=False)) / f"coastlines-glm{ver}-s{STRIDE}.npz"


def _compute() -> list[np.ndarray]:
    import contourpy
    from global_land_mask import globe  # loads the packaged mask (seconds): only on a cold cache

    mask = globe._mask[::STRIDE, ::STRIDE].astype(np.float32)
    lat = globe._lat[::STRIDE]
    lon = globe._lon[::STRIDE]
    gen = contourpy.contour_generator(lon, lat, mask, line_type=contourpy.LineType.Separate)
    return [np.asarray(seg, dtype=np.float32) for seg in gen.lines(0.5) if len(seg) >= 4]


def segments() -> list[np.ndarray]:
    """Coastline polylines as (N, 2) arrays of (lon in -180..180, lat)."""
    global _segments
    if _segments is not None:
        return _segments
    with _lock:
        if _segments is None:
            path = _cache_file()
            segs: list[np.ndarray] | None = None
            if path.exists():
                try:
                    with np.load(path) as z:
                        flat, offsets = z["points"], z["offsets"]
                    segs = [flat[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
                except (OSError, KeyError, ValueError):
                    segs = None
            if segs is None:
                segs = _compute()
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    offsets = np.cumsum([0] + [len(s) for s in segs])
                    tmp = path.with_suffix(f".{threading.get_ident()}.tmp.npz")
                    np.savez_compressed(tmp, points=np.concatenate(segs), offsets=offsets)
                    tmp.replace(path)
                except OSError:
                    pass  # a read-only cache only costs the recomputation
            _segments = segs
    return _segments
