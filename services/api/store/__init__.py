"""Read side of published runs: the run catalog (manifests), the Zarr serving store and the point index."""

from fuxiops.services.api.store.catalog import FileEntry, RunCatalog, RunInfo
from fuxiops.services.api.store.pointindex import PointIndex
from fuxiops.services.api.store.zarrstore import RunStore

__all__ = ["FileEntry", "PointIndex", "RunCatalog", "RunInfo", "RunStore"]
