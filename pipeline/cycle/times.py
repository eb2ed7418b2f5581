"""Cycle times: parsing, run ids (``YYYYMMDDHH``), the 6-hourly cadence and the data cutoff."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from fuxiops.errors import FuxiopsError

CYCLE_HOURS = (0, 6, 12, 18)


class CycleTimeError(FuxiopsError, ValueError):
    """A cycle time that cannot be parsed or is not on the 6-hourly cadence."""


def parse_cycle_time(value: str | datetime, step_hours: int = 6) -> datetime:
    """A naive-UTC datetime from ``2023-01-01T06``, ``2023-01-01T06:00Z``, ``2023010106`` or a datetime.

    The time must fall on the cycle cadence (00/06/12/18 UTC for 6-hour steps).
    """
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip()
        dt = None
        if len(text) == 10 and text.isdigit():
            try:
                dt = datetime.strptime(text, "%Y%m%d%H")
            except ValueError:
                dt = None
        if dt is None:
            t = text.removesuffix("Z").removesuffix("z")
            if len(t) == 13 and t[10] in "T ":  # 2023-01-01T06 has no minutes: fromisoformat refuses it
                t += ":00"
            try:
                dt = datetime.fromisoformat(t)
            except ValueError:
                raise CycleTimeError(f"cannot parse cycle time {value!r}; use e.g. 2023-01-01T06 or 2023010106 "
                                     "(UTC)") from None
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    if dt.minute or dt.second or dt.microsecond or dt.hour % step_hours:
        allowed = ", ".join(f"{h:02d}" for h in range(0, 24, step_hours))
        raise CycleTimeError(f"cycle time {dt:%Y-%m-%dT%H:%M} is not on the {step_hours}-hourly cadence; "
                             f"allowed hours: {allowed} UTC")
    return dt


def run_id(cycle_time: datetime) -> str:
    """The run id of a cycle: ``YYYYMMDDHH``."""
    return cycle_time.strftime("%Y%m%d%H")


def iso(dt: datetime) -> str:
    """ISO-8601 with ``Z`` (API convention)."""
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def cycles_between(start: datetime, end: datetime, step_hours: int = 6) -> list[datetime]:
    """All cycle times from ``start`` to ``end`` inclusive, in order."""
    if end < start:
        raise CycleTimeError(f"backfill end {end:%Y-%m-%dT%H} is before its start {start:%Y-%m-%dT%H}")
    out = []
    t = start
    while t <= end:
        out.append(t)
        t += timedelta(hours=step_hours)
    return out


def latest_due_cycle(now: datetime, cutoff_minutes: int, step_hours: int = 6) -> datetime:
    """The newest cycle whose data cutoff has passed at ``now`` (naive UTC)."""
    t = now - timedelta(minutes=cutoff_minutes)
    return t.replace(minute=0, second=0, microsecond=0, hour=t.hour - t.hour % step_hours)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)
