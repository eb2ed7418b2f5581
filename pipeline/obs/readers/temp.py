"""TEMP radiosonde profiles (TM 309007 in edition 3, 309052 high-resolution in edition 4).

One row per level and variable: geopotential (from geopotential or
geopotential height), temperature, dew point and wind (u/v), with pressure
in Pa as the vertical coordinate. Per-level time and position displacements
(309052) are applied when present.
"""

from __future__ import annotations

import numpy as np

from fuxiops.catalog import G0
from fuxiops.pipeline.obs.bufr import Message, compose_times
from fuxiops.pipeline.obs.obs_errors import obs_error
from fuxiops.pipeline.obs.readers.base import (BufrReader, lat_lon, message_indices, station_ids, subset_indices,
                                               wind_to_uv)
from fuxiops.pipeline.obs.schema import RowBuilder


def _level_array(msg: Message, key: str, subset: int) -> np.ndarray | None:
    vals = msg.values(key)
    return None if vals is None else vals[subset]


class ProfileReader(BufrReader):
    """Shared by TEMP: rows per level from (pressure, variables) replications."""

    name = "temp"
    signature = ("airTemperature", "nonCoordinateGeopotential", "nonCoordinateGeopotentialHeight", "windSpeed")
    categories = (2,)
    #: Single-subset profiles of one template come as one batch (pipeline.obs.fixed_layout), levels per
    #: subset; rows are put back in file order in end_batch, so both paths give the same table.
    fast_path = True
    fast_path_replication = True

    def begin_batch(self) -> None:
        self._rows: dict[str, dict[str, list[np.ndarray]]] = {}

    def decode_message(self, msg: Message, index: int, out: RowBuilder) -> None:
        # Level arrays are gathered per variable and turned into rows once per batch (end_batch):
        # radiosonde files are hundreds of messages and per-message row building would dominate.
        sid = station_ids(msg)
        lat0, lon0 = lat_lon(msg)
        parts = {k: msg.first(k) for k in ("year", "month", "day", "hour", "minute", "second")}
        keys = ["pressure", "airTemperature", "dewpointTemperature", "windDirection", "windSpeed"]
        # Probe optional elements sparingly: each absent-key lookup costs as much as reading an array.
        keys.append("nonCoordinateGeopotential" if msg.has("nonCoordinateGeopotential")
                    else "nonCoordinateGeopotentialHeight")
        if msg.has("latitudeDisplacement"):  # 309052 high-resolution profiles
            keys += ["timePeriod", "latitudeDisplacement", "longitudeDisplacement"]
        per_key: dict[str, list[np.ndarray] | None] = {k: None for k in (
            "nonCoordinateGeopotential", "nonCoordinateGeopotentialHeight", "timePeriod", "latitudeDisplacement",
            "longitudeDisplacement")}
        per_key.update({k: msg.values(k) for k in keys})
        if per_key["pressure"] is None:
            raise _no_pressure()
        staged: list[tuple[str, dict[str, np.ndarray], tuple]] = []
        midx, sidx = message_indices(msg, index), subset_indices(msg)
        for s in range(msg.n_subsets):
            pres = per_key["pressure"][s]
            arrays = {k: (v[s] if v is not None else None) for k, v in per_key.items()}
            lengths = [len(a) for k, a in arrays.items() if a is not None and k in
                       ("airTemperature", "nonCoordinateGeopotential", "nonCoordinateGeopotentialHeight",
                        "windSpeed")]
            nlev = max(lengths, default=0)
            if nlev == 0:
                continue
            if len(pres) < nlev:
                raise _inconsistent(len(pres), nlev)
            pres = pres[:nlev]

            def lev(k: str) -> np.ndarray | None:
                a = arrays.get(k)
                if a is None or len(a) < nlev:
                    return None
                return a[:nlev]

            dt = lev("timePeriod") if per_key["latitudeDisplacement"] is not None else None
            offset = np.zeros(nlev) if dt is None else np.nan_to_num(dt)  # seconds since launch (309052)
            lat = np.full(nlev, lat0[s])
            lon = np.full(nlev, lon0[s])
            dlat, dlon = lev("latitudeDisplacement"), lev("longitudeDisplacement")
            if dlat is not None and dlon is not None:
                lat = lat + np.nan_to_num(dlat)
                lon = lon + np.nan_to_num(dlon)
            z = lev("nonCoordinateGeopotential")
            if z is None and (zh := lev("nonCoordinateGeopotentialHeight")) is not None:
                z = zh * G0
            wd, ws = lev("windDirection"), lev("windSpeed")
            fields: dict[str, np.ndarray | None] = {"z": z, "t": lev("airTemperature"),
                                                    "td": lev("dewpointTemperature")}
            if ws is not None:
                wd = np.full(nlev, np.nan) if wd is None else wd
                u, v = wind_to_uv(wd, ws)
                fields.update(u=u, v=v, wind_speed=np.where(np.isfinite(wd), np.nan, ws))
            launch = [np.nan if parts[k] is None else parts[k][s] for k in parts]
            for var, values in fields.items():
                if values is None:
                    continue
                ok = np.isfinite(values)
                n = int(ok.sum())
                if n:
                    # Per-profile constants (station, launch time, indices) are kept once and repeated
                    # per row in end_batch: a batch holds hundreds of profiles.
                    staged.append((var, {"lat": lat[ok], "lon": lon[ok], "p": pres[ok], "val": values[ok],
                                         "off": offset[ok]}, (n, sid[s], launch, int(midx[s]), int(sidx[s]))))
        for var, cols, const in staged:  # only after the whole message decoded: a failure leaves nothing behind
            acc = self._rows.setdefault(var, {})
            for k, v in cols.items():
                acc.setdefault(k, []).append(v)
            acc.setdefault("const", []).append(const)

    def end_batch(self, out: RowBuilder) -> None:
        rt = out.report_type
        merged = {var: _merge(acc) for var, acc in self._rows.items()}
        # Fast-path batches come grouped by template: restore the order of the message-by-message path
        # (variables by first appearance (message, subset, field), rows by message then subset and level).
        rank = {v: i for i, v in enumerate(_FIELDS)}

        def first_seen(var: str) -> tuple[int, int, int]:
            c = merged[var]
            k = int(np.lexsort((c["sub"], c["msg"]))[0])
            return int(c["msg"][k]), int(c["sub"][k]), rank[var]

        for var in sorted(merged, key=first_seen):
            c = merged[var]
            order = np.argsort(c["msg"], kind="stable")
            if (np.diff(order) != 1).any():
                c = {k: v[order] for k, v in c.items()}
            y, mo, d, h, mi, sec = c["launch"].T
            t0 = compose_times(y, mo, d, h, np.nan_to_num(mi), np.nan_to_num(sec))
            time = t0 + (c["off"] * 1e9).astype("timedelta64[ns]")
            out.add(station_id=c["sid"], time=time, latitude=c["lat"], longitude=c["lon"], vertical=c["p"],
                    vertical_kind="pressure", variable=var, value=c["val"], obs_error=obs_error(rt, var),
                    message_index=c["msg"], subset_index=c["sub"])
        self._rows = {}


def _merge(acc: dict[str, list]) -> dict[str, np.ndarray]:
    """One array per column, the per-profile constants repeated over their rows."""
    const = acc.pop("const")
    c = {k: np.concatenate(v) for k, v in acc.items()}
    counts = np.array([x[0] for x in const], dtype=np.int64)
    sids = np.empty(len(const), dtype=object)
    sids[:] = [x[1] for x in const]
    c["sid"] = np.repeat(sids, counts)
    c["launch"] = np.repeat(np.array([x[2] for x in const], dtype=np.float64).reshape(len(const), 6), counts, axis=0)
    c["msg"] = np.repeat(np.array([x[3] for x in const], dtype=np.int32), counts)
    c["sub"] = np.repeat(np.array([x[4] for x in const], dtype=np.int32), counts)
    return c


#: Variables in the order decode_message stages them per message.
_FIELDS = ("z", "t", "td", "u", "v", "wind_speed")


def _no_pressure() -> Exception:
    from fuxiops.pipeline.obs.readers.base import WrongReportType

    return WrongReportType("profile message has no 'pressure' levels (missing vertical coordinate)")


def _inconsistent(npres: int, nlev: int) -> Exception:
    from fuxiops.pipeline.obs.bufr import MessageError

    return MessageError(f"profile has {nlev} levels of data but {npres} pressures (inconsistent replication)")


class TempReader(ProfileReader):
    """Radiosonde (TEMP) profiles -> z, t, td, u, v rows on pressure levels."""

    name = "temp"
