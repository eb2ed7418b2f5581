"""Writing observations as WMO BUFR edition 4 with ecCodes, using standard Table B descriptors.

One message per file, compressed, one subset per observation (per station,
sounding, aircraft report, occultation or satellite pixel), so generic readers
(``bufr_dump``, pdbufr, ecCodes keys) work unchanged. Profiles use fixed
replication of a level group. Section 1 says what the file holds:

* ``dataCategory`` / ``internationalDataSubCategory`` per WMO Table A / C-13
  (land SYNOP 0/0, TEMP 2/4, AMDAR 4/1, GNSS-RO 3/50, microwave radiances 21/0);
* ``bufrHeaderCentre`` 255 (not a real originating centre);
* **simulated observations** carry ``bufrHeaderSubCentre`` = 1 and
  ``dataSubCategory`` (local) = 1; raw observations have 0 in both.

Values that are missing (gaps, levels below ground) are written as BUFR missing.
Files are written aside and renamed, so readers never see half a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Sequence

import numpy as np

ORIGINATING_CENTRE = 255
SUBCENTRE_RAW = 0
SUBCENTRE_SIMULATED = 1
MASTER_TABLES_VERSION = 36

_DATE = [4001, 4002, 4003, 4004, 4005]


@dataclass(frozen=True)
class BufrLayout:
    """Descriptors and section-1 categories of one observation type."""

    category: int
    subcategory: int
    descriptors: tuple[int, ...]


def replicated(n_descriptors: int, times: int) -> int:
    """Fixed replication operator F=1 X=n Y=times."""
    if times > 255 or n_descriptors > 63:
        raise ValueError("fixed replication supports at most 63 descriptors x 255 repetitions")
    return 100000 + n_descriptors * 1000 + times


def synop_layout() -> BufrLayout:
    return BufrLayout(0, 0, (1001, 1002, *_DATE, 5001, 6001, 7030, 10051, 7032, 12101, 7032, 11001, 11002))


def temp_layout(levels: int) -> BufrLayout:
    return BufrLayout(2, 4, (1001, 1002, *_DATE, 5001, 6001, replicated(5, levels),
                             7004, 10009, 12101, 11001, 11002))


def amdar_layout() -> BufrLayout:
    return BufrLayout(4, 1, (1008, 1006, *_DATE, 5001, 6001, 7010, 7004, 12101, 11001, 11002))


def gnssro_layout(levels: int) -> BufrLayout:
    return BufrLayout(3, 50, (1007, *_DATE, 4006, 5001, 6001, replicated(2, levels), 7007, 15036))


def mwts_layout(channels: int) -> BufrLayout:
    return BufrLayout(21, 0, (1007, *_DATE, 4006, 5001, 6001, 7024, replicated(2, channels), 5042, 12163))


def _clean(a: np.ndarray) -> np.ndarray:
    import eccodes
    a = np.asarray(a, dtype=np.float64)
    return np.where(np.isfinite(a), a, eccodes.CODES_MISSING_DOUBLE)


def write_bufr(path: Path, layout: BufrLayout, when: datetime, simulated: bool,
               values: dict[str, np.ndarray | Sequence[str] | float], n_subsets: int) -> Path:
    """Write one compressed multi-subset BUFR4 message.

    ``values`` maps ecCodes keys (``latitude``, ``#2#heightOfSensor...``) to arrays of length
    ``n_subsets`` (numbers; NaN = missing), lists of strings, or scalars (same for all subsets).
    """
    import eccodes
    if n_subsets < 1:
        raise ValueError("a BUFR message needs at least one subset")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h = eccodes.codes_bufr_new_from_samples("BUFR4")
    try:
        header = {"edition": 4, "masterTableNumber": 0, "bufrHeaderCentre": ORIGINATING_CENTRE,
                  "bufrHeaderSubCentre": SUBCENTRE_SIMULATED if simulated else SUBCENTRE_RAW,
                  "updateSequenceNumber": 0, "dataCategory": layout.category,
                  "internationalDataSubCategory": layout.subcategory,
                  "dataSubCategory": 1 if simulated else 0,
                  "masterTablesVersionNumber": MASTER_TABLES_VERSION, "localTablesVersionNumber": 0,
                  "typicalYear": when.year, "typicalMonth": when.month, "typicalDay": when.day,
                  "typicalHour": when.hour, "typicalMinute": when.minute, "typicalSecond": 0,
                  "numberOfSubsets": int(n_subsets), "observedData": 1, "compressedData": 1}
        for k, v in header.items():
            eccodes.codes_set(h, k, v)
        eccodes.codes_set_array(h, "unexpandedDescriptors", list(layout.descriptors))
        for key, val in values.items():
            if isinstance(val, (list, tuple)) and val and isinstance(val[0], str):
                eccodes.codes_set_string_array(h, key, list(val))
            elif np.isscalar(val):
                arr = np.full(n_subsets, float(val))  # type: ignore[arg-type]
                eccodes.codes_set_array(h, key, _clean(arr))
            else:
                arr = np.asarray(val)
                if arr.size == 1:
                    arr = np.full(n_subsets, float(arr.ravel()[0]))
                eccodes.codes_set_array(h, key, _clean(arr))
        eccodes.codes_set(h, "pack", 1)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            eccodes.codes_write(h, fh)
        os.replace(tmp, path)
    finally:
        eccodes.codes_release(h)
    return path
