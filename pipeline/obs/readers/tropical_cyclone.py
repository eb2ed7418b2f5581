"""Tropical-cyclone messages (TM 316082-like: storm identifier, centre position, central pressure, maximum wind).

Only the analysis part of each subset becomes observations: the storm
centre position with its central pressure (``tc_pressure``) and the maximum
10 m wind at its location (``tc_wind_speed``). The forecast track that
follows (positions after a ``timePeriod``) is not an observation and is
not read.
"""

from __future__ import annotations

import numpy as np

from fuxiops.pipeline.obs.bufr import Message, MessageError
from fuxiops.pipeline.obs.obs_errors import obs_error
from fuxiops.pipeline.obs.readers.base import BufrReader, station_ids
from fuxiops.pipeline.obs.schema import RowBuilder


class TropicalCycloneReader(BufrReader):
    """Storm centre analyses -> tc_pressure, tc_wind_speed rows."""

    name = "tropical_cyclone"
    signature = ("stormIdentifier", "meteorologicalAttributeSignificance")
    categories = (7,)

    def decode_message(self, msg: Message, index: int, out: RowBuilder) -> None:
        rt = out.report_type
        n = msg.n_subsets
        storm = station_ids(msg)
        member = msg.first("ensembleMemberNumber")
        time = msg.times()
        lats, lons = msg.values("latitude"), msg.values("longitude")
        if lats is None or lons is None:
            raise MessageError("tropical-cyclone message without positions (missing coordinates)")
        pres = msg.first("pressureReducedToMeanSeaLevel")
        wind = msg.first_of(("windSpeedAt10M", "windSpeed"))
        sub = np.arange(n)
        sid = np.array([f"{s}/{int(m)}" if member is not None and np.isfinite(m) else str(s)
                        for s, m in zip(storm, member if member is not None else np.full(n, np.nan))], dtype=object)
        # Rank 1 is the observed storm centre; rank 3 (when present) the position of the maximum wind.
        clat = np.array([v[0] if len(v) else np.nan for v in lats])
        clon = np.array([v[0] if len(v) else np.nan for v in lons])
        wlat = np.array([v[2] if len(v) > 2 else (v[0] if len(v) else np.nan) for v in lats])
        wlon = np.array([v[2] if len(v) > 2 else (v[0] if len(v) else np.nan) for v in lons])
        wlat = np.where(np.isfinite(wlat), wlat, clat)
        wlon = np.where(np.isfinite(wlon), wlon, clon)
        for var, values, la, lo in (("tc_pressure", pres, clat, clon), ("tc_wind_speed", wind, wlat, wlon)):
            if values is None:
                continue
            ok = np.isfinite(values)
            if ok.any():
                out.add(station_id=sid[ok], time=time[ok], latitude=la[ok], longitude=lo[ok],
                        vertical=np.nan, vertical_kind="surface", variable=var, value=values[ok],
                        obs_error=obs_error(rt, var), message_index=index, subset_index=sub[ok])
