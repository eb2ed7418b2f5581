"""SYNOP land-station reports (TM 307080/307086 and their predecessors such as 307005).

Reads 2 m temperature and dew point, 10 m wind (converted to u10/v10), mean
sea-level and station pressure. Element names differ between templates
(``airTemperatureAt2M`` in old ECMWF templates, ``airTemperature`` after a
sensor height in the WMO ones); the first present name wins.
"""

from __future__ import annotations

import numpy as np

from fuxiops.pipeline.obs.bufr import Message, compose_times
from fuxiops.pipeline.obs.obs_errors import obs_error
from fuxiops.pipeline.obs.readers.base import (BufrReader, gathered_in_file_order, lat_lon, message_indices,
                                               station_ids, subset_indices, wind_to_uv)
from fuxiops.pipeline.obs.schema import RowBuilder

T2M_KEYS = ("airTemperatureAt2M", "airTemperature")
TD2M_KEYS = ("dewpointTemperatureAt2M", "dewpointTemperature")
WDIR_KEYS = ("windDirectionAt10M", "windDirection")
WSPD_KEYS = ("windSpeedAt10M", "windSpeed")
MSL_KEYS = ("pressureReducedToMeanSeaLevel",)
SP_KEYS = ("nonCoordinatePressure",)
HEIGHT_KEYS = ("heightOfStationGroundAboveMeanSeaLevel", "heightOfStation")


class SynopReader(BufrReader):
    """Surface land stations -> t2m, td2m, u10, v10, msl, sp rows."""

    name = "synop"
    signature = T2M_KEYS + WSPD_KEYS + MSL_KEYS + SP_KEYS
    categories = (0, 1)
    #: Rows are gathered per batch and emitted in (message, subset) order: safe for fixed-layout batches.
    fast_path = True

    def begin_batch(self) -> None:
        self._acc: dict[str, list[np.ndarray]] = {}

    def decode_message(self, msg: Message, index: int, out: RowBuilder) -> None:
        # Gather per-subset arrays; rows are emitted once per batch (end_batch), which keeps the
        # per-message Python cost to a few ecCodes calls -- SYNOP files are many tiny messages.
        n = msg.n_subsets
        nan = np.full(n, np.nan)
        lat, lon = lat_lon(msg)
        cols = {
            "sid": station_ids(msg), "lat": lat, "lon": lon,
            "year": msg.first("year"), "month": msg.first("month"), "day": msg.first("day"),
            "hour": msg.first("hour"), "minute": msg.first("minute"),
            "height": msg.first_of(HEIGHT_KEYS), "t2m": msg.first_of(T2M_KEYS), "td2m": msg.first_of(TD2M_KEYS),
            "msl": msg.first_of(MSL_KEYS), "sp": msg.first_of(SP_KEYS), "wd": msg.first_of(WDIR_KEYS),
            "ws": msg.first_of(WSPD_KEYS),
            "msg": message_indices(msg, index), "sub": subset_indices(msg),
        }
        acc = self._acc
        for k, v in cols.items():
            acc.setdefault(k, []).append(nan if v is None else v)

    def end_batch(self, out: RowBuilder) -> None:
        if not self._acc:
            return
        c = gathered_in_file_order(self._acc)
        self._acc = {}
        rt = out.report_type
        time = compose_times(c["year"], c["month"], c["day"], c["hour"], np.nan_to_num(c["minute"], nan=0.0))

        def emit(var: str, values: np.ndarray) -> None:
            ok = np.isfinite(values)
            if ok.any():
                out.add(station_id=c["sid"][ok], time=time[ok], latitude=c["lat"][ok], longitude=c["lon"][ok],
                        vertical=c["height"][ok], vertical_kind="surface", variable=var, value=values[ok],
                        obs_error=obs_error(rt, var), message_index=c["msg"][ok], subset_index=c["sub"][ok])

        for var in ("t2m", "td2m", "msl", "sp"):
            emit(var, c[var])
        # Calm (speed 0) has direction 0 by convention; a variable direction (missing) keeps the speed only.
        u, v = wind_to_uv(c["wd"], c["ws"])
        emit("u10", u)
        emit("v10", v)
        emit("wind_speed", np.where(np.isfinite(c["wd"]), np.nan, c["ws"]))
