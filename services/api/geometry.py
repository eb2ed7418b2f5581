"""WKT geometries of EDR queries (POINT, MULTIPOINT, POLYGON), point-in-polygon and great-circle distance."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from fuxiops.services.api.errors import bad_parameter

EARTH_RADIUS_KM = 6371.0088
#: Distance units of ``within-units`` in km.
DISTANCE_UNITS = {"km": 1.0, "m": 0.001, "mi": 1.609344, "nm": 1.852, "nmi": 1.852}

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR_RE = re.compile(rf"^\s*({_NUM})\s+({_NUM})(?:\s+{_NUM})?\s*$")
_GEOM_RE = re.compile(r"^\s*([A-Za-z]+)\s*(?:Z\s*)?\((.*)\)\s*$", re.S)


@dataclass(frozen=True)
class Geometry:
    kind: str  # POINT, MULTIPOINT, POLYGON
    points: np.ndarray  # (N, 2) lon, lat (POINT/MULTIPOINT) or the outer ring (POLYGON)
    holes: tuple[np.ndarray, ...] = ()


def _pair(text: str, parameter: str) -> tuple[float, float]:
    m = _PAIR_RE.match(text.strip().strip("()"))
    if not m:
        raise bad_parameter(parameter, f"{text.strip()!r} is not a coordinate pair 'lon lat'")
    lon, lat = float(m.group(1)), float(m.group(2))
    if not (-90.0 <= lat <= 90.0):
        raise bad_parameter(parameter, f"latitude {lat:g} is out of range; allowed: -90 to 90")
    if not (-180.0 <= lon <= 360.0):
        raise bad_parameter(parameter, f"longitude {lon:g} is out of range; allowed: -180 to 360")
    return lon, lat


def parse_wkt(text: str, allowed: tuple[str, ...], parameter: str = "coords") -> Geometry:
    """Parse ``POINT(lon lat)``, ``MULTIPOINT((a b),(c d))`` or ``POLYGON((x y, ...))`` (WGS84 lon/lat)."""
    m = _GEOM_RE.match(text or "")
    examples = {"POINT": "POINT(13.4 52.5)", "MULTIPOINT": "MULTIPOINT((13.4 52.5),(2.35 48.85))",
                "POLYGON": "POLYGON((0 40, 20 40, 20 55, 0 55, 0 40))"}
    if not m:
        raise bad_parameter(parameter, f"malformed WKT {text!r}; expected e.g. {examples[allowed[0]]}",
                            [examples[a] for a in allowed])
    kind, body = m.group(1).upper(), m.group(2)
    if kind not in allowed:
        raise bad_parameter(parameter, f"{kind} is not accepted by this query", [examples[a] for a in allowed])
    if kind == "POINT":
        return Geometry(kind, np.array([_pair(body, parameter)]))
    if kind == "MULTIPOINT":
        parts = re.findall(r"\(([^()]*)\)", body) or body.split(",")
        pts = [_pair(p, parameter) for p in parts if p.strip()]
        if not pts:
            raise bad_parameter(parameter, "MULTIPOINT has no points")
        return Geometry(kind, np.array(pts))
    rings = re.findall(r"\(([^()]*)\)", body)
    if not rings:
        raise bad_parameter(parameter, f"malformed POLYGON; expected e.g. {examples['POLYGON']}")
    parsed = []
    for ring in rings:
        pts = np.array([_pair(p, parameter) for p in ring.split(",") if p.strip()])
        if len(pts) < 4 or not np.allclose(pts[0], pts[-1]):
            raise bad_parameter(parameter, "a POLYGON ring needs at least 4 points and must be closed "
                                           "(first point = last point)")
        parsed.append(pts)
    return Geometry(kind, parsed[0], tuple(parsed[1:]))


def _in_ring(x: np.ndarray, y: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Even-odd rule, vectorised over points."""
    inside = np.zeros(x.shape, dtype=bool)
    xr, yr = ring[:, 0], ring[:, 1]
    for k in range(len(ring) - 1):
        x1, y1, x2, y2 = xr[k], yr[k], xr[k + 1], yr[k + 1]
        if y1 == y2:
            continue
        crosses = (y1 > y) != (y2 > y)
        xint = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < xint)
    return inside


def in_polygon(x: np.ndarray, y: np.ndarray, geom: Geometry) -> np.ndarray:
    mask = _in_ring(x, y, geom.points)
    for hole in geom.holes:
        mask &= ~_in_ring(x, y, hole)
    return mask


def haversine_km(lon1: float, lat1: float, lon2: np.ndarray, lat2: np.ndarray) -> np.ndarray:
    p1, p2 = math.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dl = np.radians(lon2 - lon1)
    a = np.sin(dphi / 2) ** 2 + math.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def parse_bbox(text: str, parameter: str = "bbox") -> tuple[float, float, float, float]:
    """``minx,miny,maxx,maxy`` in degrees (minx may exceed maxx only by wrapping: give maxx > 180 instead)."""
    parts = [p.strip() for p in (text or "").split(",")]
    if len(parts) not in (4, 6):
        raise bad_parameter(parameter, f"expected 'minx,miny,maxx,maxy', got {text!r}")
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise bad_parameter(parameter, f"expected four numbers 'minx,miny,maxx,maxy', got {text!r}") from None
    if len(vals) == 6:
        vals = [vals[0], vals[1], vals[3], vals[4]]
    minx, miny, maxx, maxy = vals
    if not all(math.isfinite(v) for v in vals):
        raise bad_parameter(parameter, "coordinates must be finite numbers")
    if not (-90 <= miny <= maxy <= 90):
        raise bad_parameter(parameter, f"latitudes must satisfy -90 <= miny <= maxy <= 90, got {miny:g}, {maxy:g}")
    if not (-180 <= minx <= maxx <= 360) or maxx - minx > 360:
        raise bad_parameter(parameter, f"longitudes must satisfy -180 <= minx <= maxx <= 360 (span <= 360), "
                                       f"got {minx:g}, {maxx:g}")
    return minx, miny, maxx, maxy
