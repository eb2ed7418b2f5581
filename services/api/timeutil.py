"""Time zones and time strings for the API.

``timezone=auto`` resolves the civil time zone of the coordinates with
``timezonefinder`` (its polygons ship inside the package; no network), and
falls back to the nautical zone ``Etc/GMT±N`` of the longitude
(N = round(lon / 15)) over the open ocean or when timezonefinder is not
installed. Local times are written as Open-Meteo does: ``YYYY-MM-DDTHH:MM``
without an offset, with ``utc_offset_seconds`` at the first time.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import numpy as np

from fuxiops.services.api.errors import bad_parameter

UTC_NAMES = {"gmt", "utc", "z", "etc/utc", "etc/gmt"}


@functools.lru_cache(maxsize=1)
def _finder() -> object | None:
    try:
        from timezonefinder import TimezoneFinder
    except ImportError:
        return None
    return TimezoneFinder()


def nautical_zone(lon: float) -> str:
    """The nautical time zone of a longitude (``Etc/GMT-1`` is UTC+1: POSIX signs are inverted)."""
    lon = ((lon + 180.0) % 360.0) - 180.0
    n = int(round(lon / 15.0))
    n = max(-12, min(12, n))
    return "Etc/GMT" if n == 0 else f"Etc/GMT{'-' if n > 0 else '+'}{abs(n)}"


@functools.lru_cache(maxsize=4096)
def auto_zone(lat: float, lon: float) -> str:
    finder = _finder()
    if finder is not None:
        lon180 = ((lon + 180.0) % 360.0) - 180.0
        name = finder.timezone_at(lng=lon180, lat=lat)  # type: ignore[attr-defined]
        if name:
            return str(name)
    return nautical_zone(lon)


@functools.lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


@functools.lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo | timezone:
    """A time zone by IANA name (``GMT``/``UTC`` accepted); errors name the parameter."""
    if name.lower() in UTC_NAMES:
        return timezone.utc
    if name not in _zones():
        raise bad_parameter("timezone", f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin, "
                                        "'GMT' or 'auto'", ["auto", "GMT", "UTC", "Europe/Berlin", "America/New_York"])
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise bad_parameter("timezone", f"unknown time zone {name!r}") from None


def local_times(epoch: np.ndarray, tz: ZoneInfo | timezone) -> tuple[list[str], int, str]:
    """Local ``YYYY-MM-DDTHH:MM`` strings, the UTC offset (s) and abbreviation at the first time."""
    out = []
    first_off, abbr = 0, "GMT"
    for k, e in enumerate(epoch.tolist()):
        t = datetime.fromtimestamp(int(e), tz)
        if k == 0:
            off = t.utcoffset() or timedelta(0)
            first_off = int(off.total_seconds())
            abbr = t.tzname() or "GMT"
        out.append(t.strftime("%Y-%m-%dT%H:%M"))
    if tz is timezone.utc:
        abbr = "GMT"
    return out, first_off, abbr


_ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


def parse_instant(text: str, parameter: str = "datetime") -> np.datetime64:
    """An ISO-8601 instant (UTC if no offset) as datetime64[s]; errors name the parameter."""
    s = text.strip()
    if not _ISO_RE.match(s):
        raise bad_parameter(parameter, f"malformed time {text!r}; expected ISO 8601 such as 2023-01-01T06:00:00Z")
    try:
        t = datetime.fromisoformat(s.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        raise bad_parameter(parameter, f"malformed time {text!r}; expected ISO 8601 such as "
                                       "2023-01-01T06:00:00Z") from None
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc).replace(tzinfo=None)
    return np.datetime64(t.replace(microsecond=0), "s")


def select_times(spec: str | None, valid: np.ndarray, parameter: str = "datetime") -> np.ndarray:
    """Indexes of ``valid`` (datetime64[s]) matching an EDR datetime: instant, ``a/b``, ``../b``, ``a/..``, or a
    comma list of instants. An instant must match a valid time exactly (no interpolation)."""
    if spec is None or spec.strip() == "":
        return np.arange(valid.size)
    spec = spec.strip()
    if "/" in spec:
        parts = spec.split("/")
        if len(parts) != 2:
            raise bad_parameter(parameter, f"an interval is 'start/end' (either may be '..'), got {spec!r}")
        lo = None if parts[0] in ("..", "") else parse_instant(parts[0], parameter)
        hi = None if parts[1] in ("..", "") else parse_instant(parts[1], parameter)
        if lo is not None and hi is not None and hi < lo:
            raise bad_parameter(parameter, f"interval end is before its start: {spec!r}")
        mask = np.ones(valid.size, dtype=bool)
        if lo is not None:
            mask &= valid >= lo
        if hi is not None:
            mask &= valid <= hi
        idx = np.flatnonzero(mask)
    else:
        wanted = [parse_instant(p, parameter) for p in spec.split(",") if p.strip()]
        idx_list = []
        for w in wanted:
            hit = np.flatnonzero(valid == w)
            if hit.size == 0:
                raise bad_parameter(parameter, f"{str(w)}Z is not a valid time of this run (6-hourly data are not "
                                               "interpolated)", [str(v) + "Z" for v in valid])
            idx_list.append(int(hit[0]))
        idx = np.array(idx_list, dtype=np.int64)
    if idx.size == 0:
        raise bad_parameter(parameter, f"no valid time of this run falls in {spec!r}; the run covers "
                                       f"{valid[0]}Z/{valid[-1]}Z")
    return idx
