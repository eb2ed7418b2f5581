"""Default observation errors (sigma_o, SI units) per report type and variable.

Values follow the usual magnitudes of operational error tables (ECMWF/NCEP
order of magnitude): they weight the background check and the assimilator's
normalisation, and can be overridden per (report type, variable) in code.
"""

from __future__ import annotations

from fuxiops.catalog import G0

#: (report_type, variable) -> sigma_o. ``*`` matches any report type.
DEFAULT_ERRORS: dict[tuple[str, str], float] = {
    ("synop", "t2m"): 1.5, ("synop", "td2m"): 2.0, ("synop", "u10"): 2.0, ("synop", "v10"): 2.0,
    ("synop", "msl"): 100.0, ("synop", "sp"): 100.0, ("synop", "wind_speed"): 2.0,
    ("temp", "t"): 1.0, ("temp", "td"): 2.0, ("temp", "u"): 2.0, ("temp", "v"): 2.0, ("temp", "z"): 15.0 * G0,
    ("temp", "wind_speed"): 2.0,
    ("amdar", "t"): 1.2, ("amdar", "td"): 2.5, ("amdar", "u"): 2.5, ("amdar", "v"): 2.5, ("amdar", "wind_speed"): 2.5,
    ("gnss_ground", "zenith_total_delay"): 0.01, ("gnss_ground", "zenith_wet_delay"): 0.01,
    ("gnss_ground", "precipitable_water"): 2.0,
    ("radiance", "brightness_temperature"): 1.0,
    ("tropical_cyclone", "tc_pressure"): 300.0, ("tropical_cyclone", "tc_wind_speed"): 5.0,
    ("*", "t2m"): 1.5, ("*", "u10"): 2.0, ("*", "v10"): 2.0, ("*", "msl"): 100.0, ("*", "t"): 1.2,
    ("*", "u"): 2.5, ("*", "v"): 2.5, ("*", "z"): 20.0 * G0,
}

#: Instrument-specific brightness-temperature errors (K).
RADIANCE_ERRORS: dict[str, float] = {"hirs": 1.5, "mwts": 0.8, "amsua": 0.5, "mhs": 2.0}

#: GNSS-RO refractivity error as a fraction of N (larger in the moist lower troposphere).
REFRACTIVITY_REL_ERROR_LOW = 0.03
REFRACTIVITY_REL_ERROR_HIGH = 0.015
REFRACTIVITY_SPLIT_HEIGHT_M = 5000.0


def obs_error(report_type: str, variable: str, default: float = float("nan")) -> float:
    """sigma_o for a (report type, variable), falling back to the ``*`` entry."""
    return DEFAULT_ERRORS.get((report_type, variable), DEFAULT_ERRORS.get(("*", variable), default))
