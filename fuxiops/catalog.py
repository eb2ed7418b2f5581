"""Variable catalog: the identity of every field fuxiops reads, predicts, encodes or serves.

One place maps a short name (``t``, ``t2m``) to its CF, GRIB2, ECMWF and
Open-Meteo identities, so that writers, readers and the API never disagree.
A *channel* is one 2-D field: a variable on one level (``t850``) or a
single-level variable (``t2m``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Literal, Sequence

from fuxiops.errors import UnknownVariableError

LevelType = Literal["isobaricInhPa", "heightAboveGround", "meanSea", "surface"]

#: Standard gravity (WMO), used to turn geopotential into geopotential height.
G0 = 9.80665

#: FuXiWeather2's 13 pressure levels (hPa), top to bottom.
PRODUCTION_LEVELS: tuple[int, ...] = (50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000)


@dataclass(frozen=True)
class Variable:
    """A physical variable and all the names the outside world knows it by."""

    name: str
    long_name: str
    units: str
    standard_name: str
    discipline: int
    parameter_category: int
    parameter_number: int
    param_id: int
    ecmwf_short_name: str
    level_type: LevelType
    #: Fixed level for single-level variables (2 m, 10 m); None for pressure-level families.
    level: int | None
    #: Open-Meteo-style name stem (``temperature``); levels add ``_850hPa`` / ``_2m``.
    api_name: str
    #: Units of the API value, and the affine map value_api = value * api_scale + api_offset.
    api_units: str
    api_scale: float = 1.0
    api_offset: float = 0.0
    #: ``state`` variables are prognostic; ``diagnostic`` ones are predicted outputs only.
    role: Literal["state", "diagnostic"] = "state"
    #: Accumulation period in hours (0: instantaneous).
    accumulation_hours: int = 0
    #: Physical bounds (SI units) used by QC and by product sanity checks.
    valid_min: float = float("-inf")
    valid_max: float = float("inf")

    @property
    def is_upper_air(self) -> bool:
        return self.level_type == "isobaricInhPa"


@dataclass(frozen=True)
class Channel:
    """One 2-D field: a variable on one level."""

    variable: Variable
    level: int | None = None

    @property
    def name(self) -> str:
        if self.variable.is_upper_air:
            return f"{self.variable.name}{self.level}"
        return self.variable.name

    @property
    def api_name(self) -> str:
        v = self.variable
        if v.is_upper_air:
            return f"{v.api_name}_{self.level}hPa"
        if v.level_type == "heightAboveGround":
            return f"{v.api_name}_{v.level}m"
        return v.api_name

    @property
    def grib_level(self) -> int:
        """The GRIB ``level`` key (hPa, metres, or 0)."""
        if self.variable.is_upper_air:
            assert self.level is not None
            return self.level
        return self.variable.level or 0

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.name


def _v(*args: object, **kwargs: object) -> Variable:
    return Variable(*args, **kwargs)  # type: ignore[arg-type]


VARIABLES: dict[str, Variable] = {
    v.name: v
    for v in (
        _v("z", "Geopotential", "m2 s-2", "geopotential", 0, 3, 4, 129, "z", "isobaricInhPa", None,
           "geopotential_height", "m", 1.0 / G0, valid_min=-5.0e3, valid_max=2.5e5),
        _v("t", "Temperature", "K", "air_temperature", 0, 0, 0, 130, "t", "isobaricInhPa", None,
           "temperature", "°C", 1.0, -273.15, valid_min=150.0, valid_max=350.0),
        _v("u", "U component of wind", "m s-1", "eastward_wind", 0, 2, 2, 131, "u", "isobaricInhPa", None,
           "wind_u_component", "m/s", valid_min=-150.0, valid_max=150.0),
        _v("v", "V component of wind", "m s-1", "northward_wind", 0, 2, 3, 132, "v", "isobaricInhPa", None,
           "wind_v_component", "m/s", valid_min=-150.0, valid_max=150.0),
        _v("r", "Relative humidity", "%", "relative_humidity", 0, 1, 1, 157, "r", "isobaricInhPa", None,
           "relative_humidity", "%", valid_min=0.0, valid_max=150.0),
        _v("t2m", "2 metre temperature", "K", "air_temperature", 0, 0, 0, 167, "2t", "heightAboveGround", 2,
           "temperature", "°C", 1.0, -273.15, valid_min=150.0, valid_max=350.0),
        _v("u10", "10 metre U wind component", "m s-1", "eastward_wind", 0, 2, 2, 165, "10u",
           "heightAboveGround", 10, "wind_u_component", "m/s", valid_min=-100.0, valid_max=100.0),
        _v("v10", "10 metre V wind component", "m s-1", "northward_wind", 0, 2, 3, 166, "10v",
           "heightAboveGround", 10, "wind_v_component", "m/s", valid_min=-100.0, valid_max=100.0),
        _v("msl", "Mean sea level pressure", "Pa", "air_pressure_at_mean_sea_level", 0, 3, 0, 151, "msl",
           "meanSea", None, "pressure_msl", "hPa", 0.01, valid_min=8.0e4, valid_max=1.1e5),
        # ECMWF (and ecCodes) encode total precipitation as the accumulation of the total
        # precipitation rate, 0/1/52 with typeOfStatisticalProcessing=1 -> paramId 228228 "tp";
        # WMO's 0/1/8 is unknown to ecCodes and to cfgrib/earthkit readers.
        _v("tp6", "Total precipitation (6 h accumulation)", "kg m-2", "precipitation_amount", 0, 1, 52, 228228,
           "tp", "surface", None, "precipitation", "mm", role="diagnostic", accumulation_hours=6,
           valid_min=0.0, valid_max=1.0e3),
    )
}

_UPPER_AIR_RE = re.compile(r"^([a-z]+?)(\d+)$")


def get_variable(name: str) -> Variable:
    """Look up a variable by short name, with an error naming what is allowed."""
    try:
        return VARIABLES[name]
    except KeyError:
        raise UnknownVariableError(name, sorted(VARIABLES)) from None


def parse_channel(name: str) -> Channel:
    """Parse a channel name: ``t850`` -> (t, 850 hPa), ``t2m`` -> (t2m)."""
    if name in VARIABLES:
        var = VARIABLES[name]
        if var.is_upper_air:
            raise UnknownVariableError(name, [f"{name}{lev}" for lev in PRODUCTION_LEVELS],
                                       what="channel (a pressure-level variable needs a level, e.g. t850)")
        return Channel(var)
    m = _UPPER_AIR_RE.match(name)
    if m and m.group(1) in VARIABLES and VARIABLES[m.group(1)].is_upper_air:
        return Channel(VARIABLES[m.group(1)], int(m.group(2)))
    raise UnknownVariableError(name, sorted(VARIABLES), what="channel")


@dataclass(frozen=True)
class VariableSet:
    """The configured state: pressure-level variables x levels, single-level variables, diagnostics.

    Channel order is fixed: each upper-air variable over all levels (top to
    bottom), then single-level variables, then diagnostics. Networks, stores
    and writers all use this order.
    """

    upper_air: tuple[str, ...] = ("z", "t", "u", "v", "r")
    levels: tuple[int, ...] = PRODUCTION_LEVELS
    surface: tuple[str, ...] = ("t2m", "u10", "v10", "msl")
    diagnostics: tuple[str, ...] = ("tp6",)
    _check: bool = field(default=True, repr=False, compare=False)

    def __post_init__(self) -> None:
        for n in self.upper_air:
            if not get_variable(n).is_upper_air:
                raise UnknownVariableError(n, [k for k, v in VARIABLES.items() if v.is_upper_air],
                                           what="pressure-level variable")
        for n in self.surface:
            v = get_variable(n)
            if v.is_upper_air or v.role != "state":
                raise UnknownVariableError(n, [k for k, v in VARIABLES.items()
                                               if not v.is_upper_air and v.role == "state"],
                                           what="single-level state variable")
        for n in self.diagnostics:
            if get_variable(n).role != "diagnostic":
                raise UnknownVariableError(n, [k for k, v in VARIABLES.items() if v.role == "diagnostic"],
                                           what="diagnostic variable")
        if len(set(self.levels)) != len(self.levels) or any(lev <= 0 or lev > 1100 for lev in self.levels):
            raise ValueError(f"levels must be distinct pressures in (0, 1100] hPa, got {list(self.levels)}")

    @property
    def state_channels(self) -> list[Channel]:
        """Prognostic channels (the network's state), in canonical order."""
        chans = [Channel(VARIABLES[n], lev) for n in self.upper_air for lev in self.levels]
        chans += [Channel(VARIABLES[n]) for n in self.surface]
        return chans

    @property
    def diagnostic_channels(self) -> list[Channel]:
        return [Channel(VARIABLES[n]) for n in self.diagnostics]

    @property
    def output_channels(self) -> list[Channel]:
        """What the forecaster predicts: the state plus diagnostics."""
        return self.state_channels + self.diagnostic_channels

    @property
    def state_names(self) -> list[str]:
        return [c.name for c in self.state_channels]

    @property
    def output_names(self) -> list[str]:
        return [c.name for c in self.output_channels]

    def channel(self, name: str) -> Channel:
        """A configured output channel by name; unknown names get the allowed list."""
        for c in self.output_channels:
            if c.name == name:
                return c
        raise UnknownVariableError(name, self.output_names, what="channel of this deployment")

    def by_api_name(self, api_name: str) -> Channel:
        for c in self.output_channels:
            if c.api_name == api_name:
                return c
        raise UnknownVariableError(api_name, [c.api_name for c in self.output_channels],
                                   what="API variable of this deployment")

    def to_dict(self) -> dict[str, list[str] | list[int]]:
        return {"upper_air": list(self.upper_air), "levels": list(self.levels),
                "surface": list(self.surface), "diagnostics": list(self.diagnostics)}

    @classmethod
    def from_dict(cls, d: dict[str, Sequence[str] | Sequence[int]]) -> "VariableSet":
        return cls(upper_air=tuple(d.get("upper_air", ())), levels=tuple(int(x) for x in d.get("levels", ())),
                   surface=tuple(d.get("surface", ())), diagnostics=tuple(d.get("diagnostics", ())))


#: The production state of FuXiWeather2: 5 x 13 + 4 = 69 channels, plus TP6 = 70 outputs.
PRODUCTION = VariableSet()

#: The testbed world is a dry Held-Suarez atmosphere: no humidity, hence no R and no
#: precipitation. Same 13 levels so that networks and products keep their shape.
TESTBED = VariableSet(upper_air=("z", "t", "u", "v"), levels=PRODUCTION_LEVELS,
                      surface=("t2m", "u10", "v10", "msl"), diagnostics=())

VARIABLE_SETS: dict[str, VariableSet] = {"production": PRODUCTION, "testbed": TESTBED}


def channels(names: Iterable[str]) -> list[Channel]:
    """Parse many channel names."""
    return [parse_channel(n) for n in names]
