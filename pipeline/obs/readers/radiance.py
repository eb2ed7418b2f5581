"""Satellite radiances as brightness temperatures: HIRS-like level-1b (TM 310008) and microwave sounders.

One row per field of view and channel, vertical coordinate = channel
number. Channel numbers and brightness temperatures are paired in order
inside the data section (quality sections after operator 222000 reuse the
element names with other meanings and are ignored). The producer's channel
quality flags, when present, set the SOURCE_FLAG bit.
"""

from __future__ import annotations

import numpy as np

from fuxiops.pipeline.obs.bufr import Message, MessageError
from fuxiops.pipeline.obs.flags import QCFlag
from fuxiops.pipeline.obs.obs_errors import RADIANCE_ERRORS, obs_error
from fuxiops.pipeline.obs.readers.base import BufrReader, file_stem_type, lat_lon
from fuxiops.pipeline.obs.schema import RowBuilder

CHANNEL_KEYS = ("channelNumber", "tovsOrAtovsOrAvhrrInstrumentationChannelNumber", "satelliteChannelNumber")
BT_KEYS = ("brightnessTemperature", "channelBrightnessTemperature")
#: Known instrument names, recognised as the first word of a file name.
INSTRUMENTS = ("mwts", "hirs", "amsua", "amsub", "mhs", "atms", "mwhs", "iasi", "airs", "cris", "ssmis")
#: BUFR code table 0 02 048 (satellite sensor indicator).
SENSOR_INDICATOR = {0: "hirs", 1: "msu", 2: "ssu", 3: "amsua", 4: "amsub", 5: "avhrr", 6: "ssmi"}
#: BUFR code table 0 02 019 (satellite instruments), the instruments we expect.
SATELLITE_INSTRUMENTS = {605: "hirs", 606: "hirs", 607: "hirs", 570: "amsua", 574: "amsub", 203: "mhs", 621: "atms"}


def satellite_ids(sat: np.ndarray) -> np.ndarray:
    """``sat<identifier>`` per subset ('' where missing), formatted once per distinct satellite."""
    ids, inverse = np.unique(sat, return_inverse=True)
    names = np.array([f"sat{int(x)}" if np.isfinite(x) else "" for x in ids], dtype=object)
    return names[inverse.ravel()]


class RadianceReader(BufrReader):
    """Brightness temperatures per channel -> ``brightness_temperature`` rows."""

    name = "radiance"
    signature = BT_KEYS
    categories = (3, 12, 21)

    def instrument_of(self, path: str) -> str:
        if self.options.get("instrument"):
            return str(self.options["instrument"])
        stem = file_stem_type(path)
        for name in INSTRUMENTS:
            if stem.startswith(name) or f"_{name}" in path.lower():
                return name
        return ""

    def decode_message(self, msg: Message, index: int, out: RowBuilder) -> None:
        n = msg.n_subsets
        lat, lon = lat_lon(msg)
        time = msg.times()
        sat = msg.first("satelliteIdentifier")
        if not out.instrument:
            ind = msg.first("satelliteSensorIndicator")
            ins = msg.first("satelliteInstruments")
            if ind is not None and np.isfinite(ind[0]) and int(ind[0]) in SENSOR_INDICATOR:
                out.instrument = SENSOR_INDICATOR[int(ind[0])]
            elif ins is not None and np.isfinite(ins[0]) and int(ins[0]) in SATELLITE_INSTRUMENTS:
                out.instrument = SATELLITE_INSTRUMENTS[int(ins[0])]
        bt_key = next((k for k in BT_KEYS if msg.has(k)), None)
        if bt_key is None:
            raise MessageError("no brightness temperatures in the message")
        ch_key = next((k for k in CHANNEL_KEYS if msg.has(k)), None)
        sigma = RADIANCE_ERRORS.get(out.instrument, obs_error("radiance", "brightness_temperature"))
        station = satellite_ids(sat) if sat is not None else np.full(n, "", dtype=object)
        # Vectorised when every subset has the same channels (always true when compressed).
        bt = msg.values_2d(bt_key)
        ch = msg.values_2d(ch_key) if ch_key is not None else None
        if bt is not None and (ch_key is None or ch is not None):
            nbt = bt.shape[1] if ch is None else min(bt.shape[1], ch.shape[1])
            bt = bt[:, :nbt]                                             # (subset, channel)
            ch = ch[:, :nbt] if ch is not None else np.broadcast_to(np.arange(1, nbt + 1, dtype=np.float64),
                                                                     bt.shape)
            flags = np.zeros(bt.shape, dtype=np.uint32)
            q = msg.values_2d("channelQualityFlagsForAtovs")
            if q is not None and q.shape[1] >= nbt:
                q = q[:, :nbt]
                flags[np.isfinite(q) & (q != 0)] = int(QCFlag.SOURCE_FLAG)
            ok = np.isfinite(bt)
            si = np.broadcast_to(np.arange(n)[:, None], bt.shape)
            out.add(station_id=np.broadcast_to(station[:, None], bt.shape)[ok],
                    time=np.broadcast_to(time[:, None], bt.shape)[ok],
                    latitude=np.broadcast_to(lat[:, None], bt.shape)[ok],
                    longitude=np.broadcast_to(lon[:, None], bt.shape)[ok], vertical=ch[ok], vertical_kind="channel",
                    variable="brightness_temperature", value=bt[ok], obs_error=sigma, message_index=index,
                    subset_index=si[ok], qc_flags=flags[ok])
            return
        bts = msg.values(bt_key)
        if bts is None:
            raise MessageError("no brightness temperatures in the message")
        chans = msg.values(ch_key) if ch_key is not None else None
        for s in range(n):
            b = bts[s]
            c = chans[s] if chans is not None else np.arange(1, len(b) + 1, dtype=np.float64)
            k = min(len(b), len(c))
            b, c = b[:k], c[:k]
            ok = np.isfinite(b)
            out.add(station_id=station[s], time=time[s], latitude=lat[s], longitude=lon[s], vertical=c[ok],
                    vertical_kind="channel", variable="brightness_temperature", value=b[ok], obs_error=sigma,
                    message_index=index, subset_index=s)
