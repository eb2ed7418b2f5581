"""Real observing-network geometry, extracted once from real BUFR files and shipped as a small npz.

Sources (``../shared/data/real/bufr``): SYNOP station locations from
``perf_synop.bufr``, radiosonde launch sites from ``temp.bufr`` and one
Metop-A HIRS orbit (pixel latitude, longitude, time) from
``metop-a_hirs_l1b_20181122.bufr``. The HIRS swath is thinned to every second
pixel of every second scan line, close to a microwave sounder's footprint
spacing. Decoding ~16,000 messages takes a minute; the build reads the npz.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from fuxiops.errors import DataError

GEOMETRY_PATH = Path(__file__).resolve().parent / "data" / "network_geometry.npz"


@dataclass(frozen=True)
class NetworkGeometry:
    synop_lat: np.ndarray
    synop_lon: np.ndarray
    synop_id: np.ndarray  # block * 1000 + station (WMO index)
    temp_lat: np.ndarray
    temp_lon: np.ndarray
    temp_id: np.ndarray
    swath_lat: np.ndarray
    swath_lon: np.ndarray
    swath_t: np.ndarray  # seconds since the first pixel of the orbit
    swath_scanpos: np.ndarray
    orbit_period_s: float


def _decode_points(path: Path, with_ids: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import eccodes
    lats, lons, ids = [], [], []
    with open(path, "rb") as fh:
        while True:
            h = eccodes.codes_bufr_new_from_file(fh)
            if h is None:
                break
            try:
                eccodes.codes_set(h, "unpack", 1)
                lat = eccodes.codes_get_array(h, "latitude")[0]
                lon = eccodes.codes_get_array(h, "longitude")[0]
                sid = -1
                if with_ids:
                    try:
                        sid = int(eccodes.codes_get(h, "blockNumber")) * 1000 + int(eccodes.codes_get(h, "stationNumber"))
                    except eccodes.KeyValueNotFoundError:
                        sid = -1
                if abs(lat) <= 90 and abs(lon) <= 360:
                    lats.append(lat)
                    lons.append(lon)
                    ids.append(sid)
            finally:
                eccodes.codes_release(h)
    return np.asarray(lats), np.asarray(lons), np.asarray(ids)


def _decode_swath(path: Path) -> tuple[np.ndarray, ...]:
    import eccodes
    lat_l, lon_l, t_l, pos_l = [], [], [], []
    with open(path, "rb") as fh:
        while True:
            h = eccodes.codes_bufr_new_from_file(fh)
            if h is None:
                break
            try:
                eccodes.codes_set(h, "unpack", 1)
                n = eccodes.codes_get(h, "numberOfSubsets")
                get = lambda k: np.broadcast_to(np.asarray(eccodes.codes_get_array(h, k), dtype=np.float64), (n,))
                lat, lon = get("latitude"), get("longitude")
                hh, mm, ss = get("hour"), get("minute"), get("second")
                pos = get("fieldOfViewNumber")
                lat_l.append(lat)
                lon_l.append(lon)
                t_l.append(hh * 3600 + mm * 60 + ss)
                pos_l.append(pos)
            finally:
                eccodes.codes_release(h)
    return tuple(np.concatenate(x) for x in (lat_l, lon_l, t_l, pos_l))


def extract_geometry(real_bufr_dir: Path, out: Path = GEOMETRY_PATH) -> Path:
    """Decode the real BUFR samples and write the compact geometry npz."""
    d = Path(real_bufr_dir)
    for name in ("perf_synop.bufr", "temp.bufr", "metop-a_hirs_l1b_20181122.bufr"):
        if not (d / name).is_file():
            raise DataError(f"real BUFR sample {d / name} not found")
    s_lat, s_lon, s_id = _decode_points(d / "perf_synop.bufr", True)
    # one entry per station location (some stations report twice)
    _, first = np.unique(np.round(np.stack([s_lat, s_lon], 1), 3), axis=0, return_index=True)
    first.sort()
    t_lat, t_lon, t_id = _decode_points(d / "temp.bufr", True)
    _, tfirst = np.unique(np.round(np.stack([t_lat, t_lon], 1), 3), axis=0, return_index=True)
    tfirst.sort()
    w_lat, w_lon, w_t, w_pos = _decode_swath(d / "metop-a_hirs_l1b_20181122.bufr")
    ok = np.isfinite(w_lat) & (np.abs(w_lat) <= 90) & np.isfinite(w_t)
    w_lat, w_lon, w_t, w_pos = w_lat[ok], w_lon[ok], w_t[ok], w_pos[ok]
    order = np.argsort(w_t, kind="stable")
    w_lat, w_lon, w_t, w_pos = w_lat[order], w_lon[order], w_t[order], w_pos[order]
    w_t = w_t - w_t[0]
    # thin to a microwave-like sampling: every 2nd scan position on every 2nd scan line
    scan_line = np.cumsum(np.r_[1, np.diff(w_pos) < 0]) - 1
    keep = (w_pos % 2 == 1) & (scan_line % 2 == 0)
    period = 101.4 * 60.0  # Metop sun-synchronous orbit period (s)
    keep &= w_t < period  # exactly one orbit, repeated along the orbit afterwards
    np.savez_compressed(
        out,
        synop_lat=s_lat[first].astype(np.float32), synop_lon=np.mod(s_lon[first], 360).astype(np.float32),
        synop_id=s_id[first].astype(np.int32),
        temp_lat=t_lat[tfirst].astype(np.float32), temp_lon=np.mod(t_lon[tfirst], 360).astype(np.float32),
        temp_id=t_id[tfirst].astype(np.int32),
        swath_lat=w_lat[keep].astype(np.float32), swath_lon=np.mod(w_lon[keep], 360).astype(np.float32),
        swath_t=w_t[keep].astype(np.float32), swath_scanpos=w_pos[keep].astype(np.int16),
        orbit_period_s=np.float64(period))
    return out


@lru_cache(maxsize=2)
def load_geometry(path: Path = GEOMETRY_PATH) -> NetworkGeometry:
    """The shipped network geometry."""
    if not Path(path).is_file():
        raise DataError(f"network geometry {path} missing; run `fuxiops world extract-geometry`")
    with np.load(path, allow_pickle=False) as z:
        return NetworkGeometry(**{k: (float(z[k]) if k == "orbit_period_s" else np.asarray(z[k])) for k in z.files})
