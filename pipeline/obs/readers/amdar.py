"""Aircraft reports (AMDAR/ACARS: TM 311001, 311010 and ECMWF's older layouts).

Single-level upper-air reports: temperature, dew point and wind (u/v). The
vertical coordinate is pressure in Pa; a flight level (pressure altitude)
is converted to pressure with the ICAO standard atmosphere, which is exact
by the definition of flight levels. Rows are gathered per batch and emitted
per variable, in (message, subset) order within each variable.
"""

from __future__ import annotations

import numpy as np

from fuxiops.pipeline.obs.bufr import Message
from fuxiops.pipeline.obs.obs_errors import obs_error
from fuxiops.pipeline.obs.readers.base import (BufrReader, flight_level_to_pressure, gathered_in_file_order, lat_lon,
                                               message_indices, reject_messages, station_ids, subset_indices,
                                               wind_to_uv)
from fuxiops.pipeline.obs.schema import RowBuilder

NO_PRESSURE = "aircraft report without pressure or flight level (missing vertical coordinate)"


class AmdarReader(BufrReader):
    """Aircraft -> t, td, u, v rows at flight pressure."""

    name = "amdar"
    signature = ("flightLevel", "aircraftFlightNumber", "aircraftRegistrationNumberOrOtherIdentification",
                 "phaseOfAircraftFlight", "globalNavigationSatelliteSystemAltitude", "airTemperature", "windSpeed")
    categories = (4,)
    #: Real AMDAR feeds are thousands of one-report messages, like SYNOP: same-template ones are read together.
    fast_path = True

    def begin_batch(self) -> None:
        self._acc: dict[str, list[np.ndarray]] = {}

    def decode_message(self, msg: Message, index: int, out: RowBuilder) -> None:
        n = msg.n_subsets
        nan = np.full(n, np.nan)
        sid = station_ids(msg)
        lat, lon = lat_lon(msg)
        time = msg.times()
        pres = msg.first("pressure")
        fl = msg.first_of(("flightLevel", "height", "globalNavigationSatelliteSystemAltitude"))
        if pres is None:
            pres = nan
        if fl is not None:
            pres = np.where(np.isfinite(pres), pres, flight_level_to_pressure(fl))
        reject_messages(msg, index, ~np.isfinite(pres), NO_PRESSURE)
        t, td, ws = msg.first("airTemperature"), msg.first("dewpointTemperature"), msg.first("windSpeed")
        wd = msg.first("windDirection") if ws is not None else None
        cols = {"sid": sid, "lat": lat, "lon": lon, "time": time, "pres": pres, "t": t, "td": td, "wd": wd, "ws": ws,
                "msg": message_indices(msg, index), "sub": subset_indices(msg)}
        acc = self._acc  # committed only now: a failure above leaves nothing behind
        for k, v in cols.items():
            acc.setdefault(k, []).append(nan if v is None else v)

    def end_batch(self, out: RowBuilder) -> None:
        if not self._acc:
            return
        c = gathered_in_file_order(self._acc)
        self._acc = {}
        rt = out.report_type
        u, v = wind_to_uv(c["wd"], c["ws"])
        for var, values in (("t", c["t"]), ("td", c["td"]), ("u", u), ("v", v),
                            ("wind_speed", np.where(np.isfinite(c["wd"]), np.nan, c["ws"]))):
            ok = np.isfinite(values)
            if ok.any():
                out.add(station_id=c["sid"][ok], time=c["time"][ok], latitude=c["lat"][ok], longitude=c["lon"][ok],
                        vertical=c["pres"][ok], vertical_kind="pressure", variable=var, value=values[ok],
                        obs_error=obs_error(rt, var), message_index=c["msg"][ok], subset_index=c["sub"][ok])
