"""Observation readers, registered by name (configuration says ``reader: synop``).

``READERS.create("synop")`` builds a reader; :func:`reader_for` picks one for
a file from its name or, failing that, from its first BUFR message. Readers
are imported lazily so that listing them never loads ecCodes.
"""

from __future__ import annotations

import os
from pathlib import Path

from fuxiops.errors import FuxiopsError
from fuxiops.registry import Registry
from fuxiops.pipeline.obs.readers.base import Reader, ReadResult, Quarantine, file_stem_type

READERS: Registry[Reader] = Registry("observation reader")
_HINT = "pip install eccodes (ships its own ecCodes library)"
for _name, _target in {
    "synop": "fuxiops.pipeline.obs.readers.synop:SynopReader",
    "temp": "fuxiops.pipeline.obs.readers.temp:TempReader",
    "amdar": "fuxiops.pipeline.obs.readers.amdar:AmdarReader",
    "gnss": "fuxiops.pipeline.obs.readers.gnss:GnssReader",
    "gnssro": "fuxiops.pipeline.obs.readers.gnss:GnssRoReader",
    "radiance": "fuxiops.pipeline.obs.readers.radiance:RadianceReader",
    "tropical_cyclone": "fuxiops.pipeline.obs.readers.tropical_cyclone:TropicalCycloneReader",
}.items():
    READERS.register(_name, _target, install_hint=_HINT)
READERS.register("csv", "fuxiops.pipeline.obs.readers.tabular:TabularReader", install_hint="pip install pandas")
READERS.register("parquet", "fuxiops.pipeline.obs.readers.tabular:ParquetReader", install_hint="pip install pyarrow")

#: File-name words -> reader (testbed names first, then common operational ones).
NAME_HINTS: dict[str, str] = {
    "synop": "synop", "temp": "temp", "radiosonde": "temp", "amdar": "amdar", "aircraft": "amdar",
    "acars": "amdar", "gnssro": "gnss", "gpsro": "gnss", "ro": "gnss", "pgps": "gnss", "gnss": "gnss",
    "mwts": "radiance", "hirs": "radiance", "amsua": "radiance", "mhs": "radiance", "atms": "radiance",
    "tropical": "tropical_cyclone", "tc": "tropical_cyclone", "metop": "radiance",
}

#: BUFR data category (WMO Table A) -> reader, used when the file name says nothing.
CATEGORY_HINTS: dict[int, str] = {0: "synop", 1: "synop", 2: "temp", 3: "radiance", 4: "amdar", 7: "tropical_cyclone",
                                  12: "radiance", 21: "radiance"}


def reader_name_for(path: str | os.PathLike[str]) -> str:
    """The reader for a file: by suffix (csv/parquet), file-name word, or first BUFR message."""
    p = Path(path)
    if p.suffix.lower() == ".csv":
        return "csv"
    if p.suffix.lower() in (".parquet", ".pq"):
        return "parquet"
    stem = file_stem_type(p)
    if stem in NAME_HINTS:
        return NAME_HINTS[stem]
    for word, name in NAME_HINTS.items():
        if len(word) > 3 and word in p.name.lower():
            return name
    return _probe(p)


def _probe(path: Path) -> str:
    from fuxiops.pipeline.obs.bufr import Message, MessageError, split_messages

    try:
        raw, problems = split_messages(path)
    except OSError as e:
        raise FuxiopsError(f"cannot read {path}: {e}") from None
    for m in raw[:3]:
        try:
            with Message(m.data) as msg:
                if msg.has("atmosphericRefractivity") or msg.has("atmosphericPathDelayInSatelliteSignal"):
                    return "gnss"
                if msg.has("brightnessTemperature"):
                    return "radiance"
                if msg.has("stormIdentifier"):
                    return "tropical_cyclone"
                if msg.data_category in CATEGORY_HINTS:
                    return CATEGORY_HINTS[msg.data_category]
        except MessageError:
            continue
    reason = problems[0].reason if problems else "no recognisable report type"
    raise FuxiopsError(f"cannot tell which reader reads {path} ({reason}); name a reader explicitly "
                       f"(one of {', '.join(READERS.names())})")


def reader_for(path: str | os.PathLike[str], name: str | None = None, **options: object) -> Reader:
    return READERS.create({name or reader_name_for(path): options})


__all__ = ["READERS", "Reader", "ReadResult", "Quarantine", "reader_for", "reader_name_for"]
