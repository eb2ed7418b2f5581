"""/runs: run listing, manifests, files."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class FileInfo(BaseModel):
    name: str
    format: str
    size: int | None
    sha256: str | None
    href: str | None = Field(description="Download URL (supports HTTP Range; ETag is the sha256); null for "
                             "directory stores such as forecast.zarr, which are not downloadable as one file.")


class RunSummary(BaseModel):
    id: str
    cycle_time: str
    status: str = Field(description="Manifest status: published, degraded, ...")
    model: dict[str, Any] = Field(description="Model provenance from the manifest.")
    servable: bool = Field(description="Served (failed/incomplete runs are listed but not served).")
    files: list[FileInfo]
    links: dict[str, str]


class RunList(BaseModel):
    latest: str | None = Field(description="Newest servable run (what 'latest' means).")
    runs: list[RunSummary]


class RunDeleted(BaseModel):
    deleted: str
