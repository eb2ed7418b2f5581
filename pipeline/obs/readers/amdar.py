"""Aircraft reports (AMDAR/ACARS: TM 311001, 311010 and ECMWF's older layouts).

Single-level upper-air reports: temperature, dew point and wind (u/v). The
vertical coordinate is pressure in Pa; a flight level (pressure altitude)
is converted to pressure with the ICAO standard atmosphere, which is exact
by the definition of flight levels.
"""

from __future__ import annotations

import numpy as np

from fuxiops.pipeline.obs.bufr import Message, MessageError
from fuxiops.pipeline.obs.obs_errors import obs_error
from fuxiops.pipeline.obs.readers.base import BufrReader, flight_level_to_pressure, lat_lon, station_ids, wind_to_uv
from fuxiops.pipeline.obs.schema import RowBuilder


class AmdarReader(BufrReader):
    """Aircraft -> t, td, u, v rows at flight pressure."""

    name = "amdar"
    signature = ("flightLevel", "aircraftFlightNumber", "aircraftRegistrationNumberOrOtherIdentification",
                 "phaseOfAircraftFlight", "globalNavigationSatelliteSystemAltitude", "airTemperature", "windSpeed")
    categories = (4,)

    def decode_message(self, msg: Message, index: int, out: RowBuilder) -> None:
        rt = out.report_type
        n = msg.n_subsets
        sid = station_ids(msg)
        lat, lon = lat_lon(msg)
        time = msg.times()
        pres = msg.first("pressure")
        fl = msg.first_of(("flightLevel", "height", "globalNavigationSatelliteSystemAltitude"))
        if pres is None:
            pres = np.full(n, np.nan)
        if fl is not None:
            pres = np.where(np.isfinite(pres), pres, flight_level_to_pressure(fl))
        if pres is None or not np.isfinite(pres).any():
            raise MessageError("aircraft report without pressure or flight level (missing vertical coordinate)")
        sub = np.arange(n)
        fields: dict[str, np.ndarray | None] = {"t": msg.first_of(("airTemperature",)),
                                                "td": msg.first_of(("dewpointTemperature",))}
        ws = msg.first_of(("windSpeed",))
        if ws is not None:
            wd = msg.first_of(("windDirection",))
            wd = np.full(n, np.nan) if wd is None else wd
            u, v = wind_to_uv(wd, ws)
            fields.update(u=u, v=v, wind_speed=np.where(np.isfinite(wd), np.nan, ws))
        for var, values in fields.items():
            if values is None:
                continue
            ok = np.isfinite(values)
            if ok.any():
                out.add(station_id=sid[ok], time=time[ok], latitude=lat[ok], longitude=lon[ok], vertical=pres[ok],
                        vertical_kind="pressure", variable=var, value=values[ok], obs_error=obs_error(rt, var),
                        message_index=index, subset_index=sub[ok])
