"""Registry of product writers by format name, and building them from the deployment configuration."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from fuxiops.config import FuxiopsConfig
from fuxiops.errors import ConfigError
from fuxiops.registry import Registry

from .base import ProductWriter

WRITERS: Registry[ProductWriter] = Registry("product format")
WRITERS.register("grib2", "fuxiops.pipeline.products.grib2:Grib2Writer", install_hint="pip install eccodes")
WRITERS.register("netcdf", "fuxiops.pipeline.products.netcdf:NetcdfWriter", install_hint="pip install netCDF4")
WRITERS.register("zarr", "fuxiops.pipeline.products.zarr_store:ZarrWriter", install_hint="pip install zarr")

FormatSpec = str | Mapping[str, Mapping[str, Any] | None]


def parse_formats(text: str) -> list[str]:
    """``"grib2,netcdf"`` -> ``["grib2", "netcdf"]``, checking every name."""
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not names:
        raise ConfigError(f"no product format given; allowed: {', '.join(WRITERS.names())}")
    for n in names:
        if n not in WRITERS:
            raise ConfigError(f"unknown product format {n!r}; allowed: {', '.join(WRITERS.names())}")
    if len(set(names)) != len(names):
        raise ConfigError(f"product format listed twice in {text!r}")
    return names


def make_writers(formats: Iterable[FormatSpec], config: FuxiopsConfig | None = None) -> list[ProductWriter]:
    """Writers for ``"name"`` or ``{name: {options}}`` entries; GRIB2 and NetCDF get their config section."""
    writers: list[ProductWriter] = []
    for spec in formats:
        name = spec if isinstance(spec, str) else next(iter(spec))
        extra: dict[str, Any] = {}
        if config is not None and name == "grib2":
            extra["config"] = config.outputs.grib
        elif config is not None and name == "netcdf":
            extra["config"] = config.outputs.netcdf
        writers.append(WRITERS.create(spec, **extra))
    return writers
