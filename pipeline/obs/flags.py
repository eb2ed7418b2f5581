"""QC flag bits of the observation table: one bit per reason, documented once.

``qc_flags`` is a uint32 bitmask. A row is *used* by the analysis when none of
the :data:`REJECT_MASK` bits is set; the other bits are informational. The
bit numbers are part of the Parquet contract: never renumber, only append.

====  =====================  ====================================================
bit   name                   meaning
====  =====================  ====================================================
0     MISSING_COORDINATE     latitude, longitude or time missing or invalid
1     OUT_OF_WINDOW          time outside the report type's assimilation window
2     DOMAIN                 position/vertical coordinate outside the model domain
3     PHYSICAL_BOUNDS        value outside physical bounds (catalog valid_min/max)
4     DUPLICATE              an earlier row has the same report/station/time/place/value key
5     BLACKLIST              station or platform on the configured blacklist
6     BACKGROUND             \\|O-B\\| > k * sigma (background check)
7     BIWEIGHT               bi-weight z-score of O-B (or O) above the latitude-band threshold
8     THINNED                another row represents this grid cell/hour (super-ob member)
9     SOURCE_FLAG            the producer's own quality flag marks the value bad
10    NO_BACKGROUND          info: no background value here (check skipped)
11    SUPEROB                info: this row carries the super-ob of its cell/hour
====  =====================  ====================================================
"""

from __future__ import annotations

from enum import IntFlag

import numpy as np


class QCFlag(IntFlag):
    """Reason bits of ``qc_flags`` (see the module docstring)."""

    MISSING_COORDINATE = 1 << 0
    OUT_OF_WINDOW = 1 << 1
    DOMAIN = 1 << 2
    PHYSICAL_BOUNDS = 1 << 3
    DUPLICATE = 1 << 4
    BLACKLIST = 1 << 5
    BACKGROUND = 1 << 6
    BIWEIGHT = 1 << 7
    THINNED = 1 << 8
    SOURCE_FLAG = 1 << 9
    NO_BACKGROUND = 1 << 10
    SUPEROB = 1 << 11


#: Bits that make a row unusable by the analysis.
REJECT_MASK: int = int(
    QCFlag.MISSING_COORDINATE | QCFlag.OUT_OF_WINDOW | QCFlag.DOMAIN | QCFlag.PHYSICAL_BOUNDS | QCFlag.DUPLICATE
    | QCFlag.BLACKLIST | QCFlag.BACKGROUND | QCFlag.BIWEIGHT | QCFlag.THINNED | QCFlag.SOURCE_FLAG
)

FLAG_DESCRIPTIONS: dict[str, str] = {
    "MISSING_COORDINATE": "latitude, longitude or time missing or invalid",
    "OUT_OF_WINDOW": "time outside the report type's assimilation window",
    "DOMAIN": "position or vertical coordinate outside the model domain",
    "PHYSICAL_BOUNDS": "value outside physical bounds",
    "DUPLICATE": "duplicate of an earlier row (same report type, station, time, position, level, variable)",
    "BLACKLIST": "station or platform on the blacklist",
    "BACKGROUND": "|O-B| > k * sigma",
    "BIWEIGHT": "bi-weight z-score above the latitude-band threshold",
    "THINNED": "thinned: another row carries the super-ob of this cell and hour",
    "SOURCE_FLAG": "the producer's quality flag marks the value bad",
    "NO_BACKGROUND": "info: no background value at this location (background check skipped)",
    "SUPEROB": "info: row carries the super-ob of its cell and hour",
}


def flag_names(value: int) -> list[str]:
    """Names of the bits set in ``value``."""
    return [f.name for f in QCFlag if value & int(f)]  # type: ignore[misc]


def is_rejected(flags: np.ndarray) -> np.ndarray:
    """Boolean mask of rows with any rejecting bit."""
    return (np.asarray(flags, dtype=np.uint32) & np.uint32(REJECT_MASK)) != 0


def bit_table() -> list[dict[str, object]]:
    """The bit documentation as records (written into every QC report)."""
    return [{"bit": int(f).bit_length() - 1, "name": f.name, "rejects": bool(int(f) & REJECT_MASK),
             "meaning": FLAG_DESCRIPTIONS[f.name or ""]} for f in QCFlag]
