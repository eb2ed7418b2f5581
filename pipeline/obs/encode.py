"""Write observations as WMO BUFR edition 4 with ecCodes (testbed-style files).

The testbed's layout: one file per report type and cycle,
``obs/{raw,sim}/YYYYMMDDHH/<type>_YYYYMMDDHH.bufr``, standard WMO element
names, compressed or uncompressed subsets. Used to build test inputs and
benchmark cycles, and to export observations to partners.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

#: Unexpanded descriptors per report type (standard WMO Table B/D elements).
TEMPLATES: dict[str, tuple[list[int], int]] = {
    # block, station, date, time, lat/lon (high accuracy), station height, T, MSL, wind
    "synop": ([1001, 1002, 301011, 301012, 301021, 7030, 12101, 10051, 11001, 11002], 0),
    # ... then a delayed replication of (pressure, geopotential height, T, wind direction, wind speed)
    "temp": ([1001, 1002, 301011, 301012, 301021, 105000, 31002, 7004, 10009, 12101, 11001, 11002], 2),
    "amdar": ([1008, 301011, 301012, 301021, 7010, 12101, 11001, 11002], 4),
    "gnssro": ([1007, 301011, 301012, 301021, 102000, 31002, 7007, 15036], 3),
    "mwts": ([1007, 301011, 301012, 301021, 102000, 31002, 5042, 12163], 21),
}
SCALARS: dict[str, list[str]] = {
    "synop": ["blockNumber", "stationNumber", "year", "month", "day", "hour", "minute", "latitude", "longitude",
              "heightOfStationGroundAboveMeanSeaLevel", "airTemperature", "pressureReducedToMeanSeaLevel",
              "windDirection", "windSpeed"],
    "temp": ["blockNumber", "stationNumber", "year", "month", "day", "hour", "minute", "latitude", "longitude"],
    "amdar": ["aircraftRegistrationNumberOrOtherIdentification", "year", "month", "day", "hour", "minute", "latitude",
              "longitude", "flightLevel", "airTemperature", "windDirection", "windSpeed"],
    "gnssro": ["satelliteIdentifier", "year", "month", "day", "hour", "minute", "latitude", "longitude"],
    "mwts": ["satelliteIdentifier", "year", "month", "day", "hour", "minute", "latitude", "longitude"],
}
#: Replicated (per level / channel) elements: (n_levels, subset) arrays.
LEVELS: dict[str, list[str]] = {
    "temp": ["pressure", "nonCoordinateGeopotentialHeight", "airTemperature", "windDirection", "windSpeed"],
    "gnssro": ["height", "atmosphericRefractivity"],
    "mwts": ["channelNumber", "brightnessTemperature"],
}
_STRINGS = {"aircraftRegistrationNumberOrOtherIdentification"}


def write_bufr(path: str | os.PathLike[str], report_type: str, scalars: Mapping[str, Sequence[object]],
               levels: Mapping[str, np.ndarray] | None = None, *, compressed: bool = True,
               subsets_per_message: int = 500, append: bool = False) -> int:
    """Write ``n`` reports (subsets) of a report type; returns the number of messages.

    ``scalars[key]`` has one value per report (NaN = missing); ``levels[key]``
    is (n, n_levels) for the replicated block (same number of levels in every
    report, as compressed messages need).
    """
    import eccodes as ec

    if report_type not in TEMPLATES:
        raise ValueError(f"unknown report type {report_type!r}; allowed: {', '.join(TEMPLATES)}")
    descriptors, category = TEMPLATES[report_type]
    n = len(next(iter(scalars.values())))
    nlev = 0
    if report_type in LEVELS:
        if not levels:
            raise ValueError(f"{report_type} needs per-level arrays {LEVELS[report_type]}")
        nlev = int(np.asarray(levels[LEVELS[report_type][0]]).shape[1])
    messages = 0
    with open(path, "ab" if append else "wb") as f:
        for start in range(0, n, subsets_per_message):
            sl = slice(start, min(n, start + subsets_per_message))
            ns = sl.stop - sl.start
            h = ec.codes_bufr_new_from_samples("BUFR4")
            try:
                first = {k: np.asarray(v)[sl] for k, v in scalars.items()}
                ec.codes_set(h, "edition", 4)
                ec.codes_set(h, "masterTableNumber", 0)
                ec.codes_set(h, "bufrHeaderCentre", 98)
                ec.codes_set(h, "dataCategory", category)
                ec.codes_set(h, "masterTablesVersionNumber", 29)
                ec.codes_set(h, "localTablesVersionNumber", 0)
                for k, key in (("year", "typicalYear"), ("month", "typicalMonth"), ("day", "typicalDay"),
                               ("hour", "typicalHour"), ("minute", "typicalMinute")):
                    v = np.asarray(first[k], dtype=np.float64)
                    ec.codes_set(h, key, int(np.nanmin(v)) if np.isfinite(v).any() else 0)
                ec.codes_set(h, "numberOfSubsets", ns)
                ec.codes_set(h, "observedData", 1)
                ec.codes_set(h, "compressedData", 1 if compressed else 0)
                if nlev:
                    ec.codes_set_array(h, "inputExtendedDelayedDescriptorReplicationFactor", [nlev] * (1 if compressed else ns))
                ec.codes_set_array(h, "unexpandedDescriptors", descriptors)
                for key, vals in first.items():
                    _set(ec, h, key, vals, ns, compressed)
                if nlev and not compressed:
                    # Uncompressed: ranks run through the subsets, so one subset-major array per element.
                    for key in LEVELS[report_type]:
                        _set(ec, h, key, np.asarray(levels[key])[sl].ravel(), ns, compressed)  # type: ignore[index]
                elif nlev:
                    for key in LEVELS[report_type]:
                        arr = np.asarray(levels[key])[sl]  # type: ignore[index]
                        for r in range(nlev):
                            # Repeated element names: level r has rank r+1 (after any scalar of that name).
                            rank = r + 1 + (1 if key in SCALARS[report_type] else 0)
                            _set(ec, h, f"#{rank}#{key}", arr[:, r], ns, compressed)
                ec.codes_set(h, "pack", 1)
                ec.codes_write(h, f)
                messages += 1
            finally:
                ec.codes_release(h)
    return messages


def _set(ec: object, h: int, key: str, vals: np.ndarray, ns: int, compressed: bool) -> None:
    base = key.split("#")[-1]
    if base in _STRINGS:
        ec.codes_set_string_array(h, key, [str(x) for x in vals])  # type: ignore[attr-defined]
        return
    v = np.asarray(vals, dtype=np.float64)
    ec.codes_set_double_array(h, key, np.where(np.isfinite(v), v, -1.0e100).tolist())  # type: ignore[attr-defined]
