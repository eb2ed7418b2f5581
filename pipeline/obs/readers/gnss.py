"""GNSS observations: ground-based zenith delays (TM 307022) and radio occultation (TM 310026).

Ground GNSS gives the zenith total delay (the slant delay at elevation 90),
its wet component and precipitable water at the receiver. Radio occultation
gives refractivity profiles against height (the paper's GNSS-RO observation,
N = 77.6 P/T + 3.73e5 e/T^2). One reader handles both; each message is
classified by the elements it holds.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fuxiops.pipeline.obs.bufr import Message, MessageError, RawMessage
from fuxiops.pipeline.obs.obs_errors import (REFRACTIVITY_REL_ERROR_HIGH, REFRACTIVITY_REL_ERROR_LOW,
                                              REFRACTIVITY_SPLIT_HEIGHT_M, obs_error)
from fuxiops.pipeline.obs.readers.base import BufrReader, ReadResult, lat_lon, station_ids
from fuxiops.pipeline.obs.schema import RowBuilder, concat_tables

RO_KEYS = ("atmosphericRefractivity",)
GROUND_KEYS = ("atmosphericPathDelayInSatelliteSignal", "precipitableWater",
               "componentOfZenithPathDelayDueToWaterVapour")


class GnssReader(BufrReader):
    """Ground GNSS (zenith delays, water vapour) and GNSS-RO refractivity profiles."""

    name = "gnss"
    signature = RO_KEYS + GROUND_KEYS
    categories = (0, 1, 3, 12)

    def read_messages(self, path: str, raw: Sequence[RawMessage]) -> ReadResult:
        # One file may mix ground and RO messages: rows go to a builder per report type.
        self._builders = {"gnss_ground": RowBuilder("gnss_ground", path),
                          "gnssro": RowBuilder("gnssro", path)}
        res = super().read_messages(path, raw)
        res.table = concat_tables([res.table] + [b.table() for b in self._builders.values()])
        return res

    def decode_message(self, msg: Message, index: int, out: RowBuilder) -> None:
        if any(msg.has(k) for k in RO_KEYS):
            self._decode_ro(msg, index, self._builders["gnssro"])
        else:
            self._decode_ground(msg, index, self._builders["gnss_ground"])

    def _decode_ground(self, msg: Message, index: int, out: RowBuilder) -> None:
        rt = out.report_type
        n = msg.n_subsets
        sid = station_ids(msg)
        lat, lon = lat_lon(msg)
        time = msg.times()
        h = msg.first_of(("heightOfStation", "heightOfStationGroundAboveMeanSeaLevel"))
        vert = np.full(n, np.nan) if h is None else h
        sub = np.arange(n)
        delays, elev, errs = msg.values("atmosphericPathDelayInSatelliteSignal"), msg.values("elevation"), \
            msg.values("estimatedErrorInAtmosphericPathDelay")
        ztd = np.full(n, np.nan)
        ztd_err = np.full(n, np.nan)
        if delays is not None:
            for s in range(n):
                d = delays[s]
                e = elev[s] if elev is not None else np.array([90.0])
                # The zenith total delay is the path delay reported at elevation 90 degrees.
                zen = np.flatnonzero(np.isclose(e[:len(d)], 90.0))
                if zen.size:
                    ztd[s] = d[zen[0]]
                    if errs is not None and len(errs[s]) > zen[0]:
                        ztd_err[s] = errs[s][zen[0]]
        fields = {"zenith_total_delay": ztd,
                  "zenith_wet_delay": msg.first("componentOfZenithPathDelayDueToWaterVapour"),
                  "precipitable_water": msg.first("precipitableWater")}
        for var, values in fields.items():
            if values is None:
                continue
            ok = np.isfinite(values)
            if not ok.any():
                continue
            err = np.full(n, obs_error(rt, var))
            if var == "zenith_total_delay":
                err = np.where(np.isfinite(ztd_err) & (ztd_err > 0), ztd_err, err)
            out.add(station_id=sid[ok], time=time[ok], latitude=lat[ok], longitude=lon[ok], vertical=vert[ok],
                    vertical_kind="height", variable=var, value=values[ok], obs_error=err[ok],
                    message_index=index, subset_index=sub[ok])

    def _decode_ro(self, msg: Message, index: int, out: RowBuilder) -> None:
        sid = station_ids(msg)
        occ = msg.first("satelliteIdentifier")
        lat, lon = lat_lon(msg)
        time = msg.times()
        heights = msg.values("height") or msg.values("geometricHeight") or msg.values("heightOfStation")
        refr = msg.values("atmosphericRefractivity")
        if heights is None or refr is None:
            raise MessageError("radio-occultation message without height or refractivity levels")
        for s in range(msg.n_subsets):
            nv, hv = refr[s], heights[s]
            if len(hv) < len(nv):
                raise MessageError(f"subset {s}: {len(nv)} refractivity values but {len(hv)} heights")
            # 310026 carries other heights (e.g. the level-2 block) after the refractivity ones.
            hv = hv[:len(nv)]
            ok = np.isfinite(nv)
            if not ok.any():
                continue
            err = np.where(hv < REFRACTIVITY_SPLIT_HEIGHT_M, REFRACTIVITY_REL_ERROR_LOW,
                           REFRACTIVITY_REL_ERROR_HIGH) * np.abs(nv)
            station = sid[s] if sid[s] else (f"sat{int(occ[s])}" if occ is not None and np.isfinite(occ[s]) else "ro")
            out.add(station_id=station, time=time[s], latitude=lat[s], longitude=lon[s], vertical=hv[ok],
                    vertical_kind="height", variable="refractivity", value=nv[ok], obs_error=err[ok],
                    message_index=index, subset_index=s)


class GnssRoReader(GnssReader):
    """GNSS radio occultation only (files named gnssro_*)."""

    name = "gnssro"
    signature = RO_KEYS

