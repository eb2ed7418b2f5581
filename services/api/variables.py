"""API variables: Open-Meteo names for stored channels and derived quantities, and unit conversions.

Each stored channel is served under its catalog API name
(``temperature_2m``, ``geopotential_height_500hPa``); where both wind
components exist on a level the API adds ``wind_speed_<level>`` and
``wind_direction_<level>``. Values are converted from the store's SI units
to the units the request asks for, as Open-Meteo does (``temperature_unit``,
``wind_speed_unit``, ``precipitation_unit``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from fuxiops.catalog import Channel

Quantity = Literal["temperature", "speed", "direction", "pressure", "height", "precipitation", "other"]
TemperatureUnit = Literal["celsius", "fahrenheit"]
WindSpeedUnit = Literal["kmh", "ms", "mph", "kn"]
PrecipitationUnit = Literal["mm", "inch"]

#: (factor from m/s, Open-Meteo's unit label)
WIND_UNITS: dict[str, tuple[float, str]] = {"kmh": (3.6, "km/h"), "ms": (1.0, "m/s"),
                                            "mph": (3600.0 / 1609.344, "mp/h"), "kn": (3600.0 / 1852.0, "kn")}
#: UCUM codes for CoverageJSON unit symbols.
UCUM = {"°C": "Cel", "°F": "[degF]", "km/h": "km/h", "m/s": "m/s", "mp/h": "[mi_i]/h", "kn": "[kn_i]", "°": "deg",
        "hPa": "hPa", "m": "m", "mm": "mm", "inch": "[in_i]", "%": "%"}


@dataclass(frozen=True)
class Units:
    """The unit choices of one request."""

    temperature: TemperatureUnit = "celsius"
    wind_speed: WindSpeedUnit = "kmh"
    precipitation: PrecipitationUnit = "mm"


@dataclass(frozen=True)
class ApiVariable:
    """A variable the API serves: one stored channel, or wind speed/direction from two."""

    name: str
    long_name: str
    standard_name: str
    quantity: Quantity
    #: Store channel names the value is computed from (one, or u then v for winds).
    channels: tuple[str, ...]
    kind: Literal["channel", "wind_speed", "wind_direction"] = "channel"
    #: Pressure level (hPa) for upper-air variables, else None.
    level: int | None = None
    #: Height label for single-level variables (``2m``, ``10m``), for the EDR collections.
    stem: str = ""
    #: Affine map SI -> API units for ``other`` quantities (from the catalog).
    scale: float = 1.0
    offset: float = 0.0
    other_units: str = ""

    def units(self, u: Units) -> str:
        q = self.quantity
        if q == "temperature":
            return "°F" if u.temperature == "fahrenheit" else "°C"
        if q == "speed":
            return WIND_UNITS[u.wind_speed][1]
        if q == "direction":
            return "°"
        if q == "pressure":
            return "hPa"
        if q == "height":
            return "m"
        if q == "precipitation":
            return "inch" if u.precipitation == "inch" else "mm"
        return self.other_units

    def compute(self, values: np.ndarray, index: dict[str, int], u: Units) -> np.ndarray:
        """API values from a ``(..., C, S)`` array of SI store values (channels on axis -2)."""
        if self.kind == "channel":
            x = values[..., index[self.channels[0]], :]
        else:
            uu = values[..., index[self.channels[0]], :]
            vv = values[..., index[self.channels[1]], :]
            if self.kind == "wind_speed":
                x = np.hypot(uu, vv)
            else:
                return wind_direction(uu, vv)
        return self.convert(x, u)

    def linear(self, u: Units) -> tuple[float, float]:
        """(scale, offset) with api = si * scale + offset (every quantity but direction is affine)."""
        q = self.quantity
        if q == "temperature":
            return (1.8, 32.0 - 273.15 * 1.8) if u.temperature == "fahrenheit" else (1.0, -273.15)
        if q == "speed":
            return (WIND_UNITS[u.wind_speed][0], 0.0)
        if q == "precipitation":
            return (1.0 / 25.4, 0.0) if u.precipitation == "inch" else (1.0, 0.0)
        if q == "direction":
            return (1.0, 0.0)
        return (self.scale, self.offset)

    def convert(self, x: np.ndarray, u: Units) -> np.ndarray:
        scale, offset = self.linear(u)
        if scale == 1.0 and offset == 0.0:
            return x
        return x * np.float32(scale) + np.float32(offset)


class Plan:
    """Precomputed recipe to turn a (C, S) point array into (V, S) API values in one pass.

    Stored channels are converted with one fused multiply-add over all requested variables; derived
    winds are computed after. Plans are cached per run, variable list and units: the hot path only
    indexes and multiplies.
    """

    def __init__(self, variables: Sequence[ApiVariable], index: dict[str, int], u: Units) -> None:
        self.names = [v.name for v in variables]
        lin = [(k, v) for k, v in enumerate(variables) if v.kind == "channel"]
        self.lin_rows = np.array([k for k, _ in lin], dtype=np.intp)
        self.lin_channels = np.array([index[v.channels[0]] for _, v in lin], dtype=np.intp)
        ab = [v.linear(u) for _, v in lin]
        self.scale = np.array([a for a, _ in ab], dtype=np.float32)[:, None]
        self.offset = np.array([b for _, b in ab], dtype=np.float32)[:, None]
        self.derived = [(k, v.kind, index[v.channels[0]], index[v.channels[1]], np.float32(v.linear(u)[0]))
                        for k, v in enumerate(variables) if v.kind != "channel"]
        self.n = len(variables)

    def apply(self, values: np.ndarray) -> np.ndarray:
        """(V, S) float32 from a (C, S) array."""
        out = np.empty((self.n, values.shape[-1]), dtype=np.float32)
        if self.lin_rows.size:
            out[self.lin_rows] = values[self.lin_channels] * self.scale + self.offset
        for k, kind, iu, iv, scale in self.derived:
            uu, vv = values[iu], values[iv]
            out[k] = np.hypot(uu, vv) * scale if kind == "wind_speed" else wind_direction(uu, vv)
        return out


def wind_direction(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Meteorological wind direction in degrees (0-360): where the wind blows FROM, clockwise from north.

    A westerly (u > 0, v = 0) is 270; a northerly (u = 0, v < 0) is 360 -> 0; calm is 0.
    """
    d = np.degrees(np.arctan2(-u, -v)).astype(np.float32) % np.float32(360.0)
    d = np.where(np.hypot(u, v) < 1e-6, np.float32(0.0), d)
    return d.astype(np.float32)


def _quantity(ch: Channel) -> Quantity:
    v = ch.variable
    if v.name in ("t", "t2m"):
        return "temperature"
    if v.name in ("u", "v", "u10", "v10"):
        return "speed"
    if v.name == "msl":
        return "pressure"
    if v.name == "z":
        return "height"
    if v.name == "tp6":
        return "precipitation"
    return "other"


def api_variables(channels: Sequence[Channel]) -> dict[str, ApiVariable]:
    """The API variables a run serves, given its stored channels (catalog order, derived winds after)."""
    out: dict[str, ApiVariable] = {}
    names = {c.name for c in channels}
    for ch in channels:
        v = ch.variable
        stem = "" if v.is_upper_air else ch.api_name.removeprefix(v.api_name).lstrip("_")
        out[ch.api_name] = ApiVariable(
            name=ch.api_name, long_name=v.long_name + (f" at {ch.level} hPa" if v.is_upper_air else ""),
            standard_name="geopotential_height" if v.name == "z" else v.standard_name, quantity=_quantity(ch),
            channels=(ch.name,), level=ch.level if v.is_upper_air else None, stem=stem,
            scale=v.api_scale, offset=v.api_offset, other_units=v.api_units)
    # Derived winds wherever both components exist on a level.
    pairs: list[tuple[str, str, int | None, str]] = []
    if "u10" in names and "v10" in names:
        pairs.append(("u10", "v10", None, "10m"))
    for ch in channels:
        if ch.variable.name == "u" and f"v{ch.level}" in names:
            pairs.append((ch.name, f"v{ch.level}", ch.level, f"{ch.level}hPa"))
    for u_name, v_name, level, suffix in pairs:
        where = f" at {level} hPa" if level else " at 10 m"
        stem = "" if level else "10m"
        out[f"wind_speed_{suffix}"] = ApiVariable(
            name=f"wind_speed_{suffix}", long_name="Wind speed" + where, standard_name="wind_speed",
            quantity="speed", channels=(u_name, v_name), kind="wind_speed", level=level, stem=stem)
        out[f"wind_direction_{suffix}"] = ApiVariable(
            name=f"wind_direction_{suffix}", long_name="Wind direction (from which the wind blows)" + where,
            standard_name="wind_from_direction", quantity="direction", channels=(u_name, v_name),
            kind="wind_direction", level=level, stem=stem)
    return out


def family(var: ApiVariable) -> str:
    """Name of a variable without its level (``temperature_850hPa`` -> ``temperature``), for EDR z queries."""
    if var.level is not None:
        return var.name.removesuffix(f"_{var.level}hPa")
    return var.name
