"""Forecast products: GRIB2, CF NetCDF and the Zarr serving store, published atomically with a manifest.

``publish(forecast, run, out_dir, formats, config)`` streams a forecast
generator through one writer per format (see ``base.ProductWriter`` and the
``WRITERS`` registry) into ``{products}/{run_id}/``.
"""

from .base import ProductWriter, RunMeta, StepData, WrittenFile
from .publish import MANIFEST, PublishError, PublishResult, publish
from .registry import WRITERS, make_writers, parse_formats

__all__ = ["MANIFEST", "WRITERS", "ProductWriter", "PublishError", "PublishResult", "RunMeta", "StepData",
           "WrittenFile", "make_writers", "parse_formats", "publish"]
