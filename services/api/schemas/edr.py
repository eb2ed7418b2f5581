"""OGC API - EDR request parameters and metadata responses."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class EdrQuery(BaseModel):
    """Parameters shared by position, area, cube and radius queries."""

    model_config = ConfigDict(frozen=True)

    coords: str | None = Field(default=None, description="WKT: POINT(lon lat) / MULTIPOINT for position, "
                               "POLYGON for area, POINT for radius.")
    bbox: str | None = Field(default=None, description="cube: minx,miny,maxx,maxy (degrees).")
    z: str | None = Field(default=None, description="Pressure level(s) in hPa: 850, 500,850 or 300/900.")
    datetime: str | None = Field(default=None, description="Instant, comma list, or interval a/b (.. open).")
    parameter_name: str | None = Field(default=None, description="Comma list of parameter names.")
    crs: str | None = Field(default=None, description="Only CRS84 (WGS84 lon/lat).")
    f: Literal["CoverageJSON", "GeoJSON", "covjson", "geojson", "json"] = "CoverageJSON"
    within: float | None = Field(default=None, description="radius: distance.")
    within_units: str | None = Field(default=None, description="radius: km, m, mi, nm.")


class Link(BaseModel):
    href: str
    rel: str
    type: str | None = None
    title: str | None = None


class LandingPage(BaseModel):
    title: str
    description: str
    links: list[Link]


class Conformance(BaseModel):
    conformsTo: list[str]


class Collection(BaseModel):
    """EDR collection metadata (also used for instances)."""

    model_config = ConfigDict(extra="allow")

    id: str
    title: str
    description: str
    links: list[dict[str, Any]]
    extent: dict[str, Any]
    data_queries: dict[str, Any]
    crs: list[str]
    output_formats: list[str]
    parameter_names: dict[str, Any]


class Collections(BaseModel):
    links: list[dict[str, Any]]
    collections: list[Collection]


class Instances(BaseModel):
    links: list[dict[str, Any]]
    instances: list[Collection]
