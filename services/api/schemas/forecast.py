"""/v1/forecast: Open-Meteo-compatible request parameters and response."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fuxiops.services.api.schemas.common import RunRef


class ForecastQuery(BaseModel):
    """Query parameters of /v1/forecast (Open-Meteo names and defaults)."""

    model_config = ConfigDict(extra="ignore")

    latitude: str = Field(description="Latitude(s) in degrees north, -90..90; a comma list for several locations.",
                          examples=["52.52", "52.52,48.85"])
    longitude: str = Field(description="Longitude(s) in degrees east, -180..360; as many as latitudes.",
                           examples=["13.41", "13.41,2.35"])
    hourly: list[str] | None = Field(default=None, description="Variables (comma list or repeated), e.g. "
                                     "temperature_2m,wind_speed_10m,pressure_msl. Values are 6-hourly, as the "
                                     "model steps: nothing is interpolated.")
    forecast_days: int = Field(default=7, ge=1, le=16, description="Days from local midnight of the cycle day.")
    timezone: str = Field(default="GMT", description="IANA name, GMT, or 'auto' (zone of the coordinates).")
    temperature_unit: Literal["celsius", "fahrenheit"] = "celsius"
    wind_speed_unit: Literal["kmh", "ms", "mph", "kn"] = "kmh"
    precipitation_unit: Literal["mm", "inch"] = "mm"
    timeformat: Literal["iso8601", "unixtime"] = "iso8601"
    elevation: str | None = Field(default=None, description="Elevation(s) in m to report back (not used for "
                                  "downscaling); default: null (the model grid has no terrain height).")
    run: str | None = Field(default=None, description="'latest' (default) or a run id YYYYMMDDHH.",
                            pattern=r"^(latest|\d{10})$")
    daily: str | None = Field(default=None, description="Not supported (6-hourly model); rejected with 400.")
    current: str | None = Field(default=None, description="Not supported; rejected with 400.")


class ForecastResponse(BaseModel):
    """One location (a list of these for several locations), shaped like Open-Meteo's."""

    latitude: float = Field(description="Latitude of the grid point used.")
    longitude: float = Field(description="Longitude of the grid point used (-180..180).")
    generationtime_ms: float
    utc_offset_seconds: int
    timezone: str
    timezone_abbreviation: str
    elevation: float | None
    hourly_units: dict[str, str] | None = None
    hourly: dict[str, list[float | None] | list[str] | list[int]] | None = None
    run: RunRef
