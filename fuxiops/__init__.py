"""fuxiops: an operational AI weather service (FuXiWeather2-style analysis and forecast).

The root package holds the core every layer shares without importing torch:
the variable catalog, grids, configuration, metrics, registries and logging.
Layers live in subpackages: ``fuxiops.pipeline`` (flows, ingest, testbed
world, publishing), ``fuxiops.services`` (REST API), ``fuxiops.models``
(networks, training, inference) and ``fuxiops.compression``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fuxiops")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"
