"""The product-writer interface: what every output format implements, and the run it describes.

A writer is opened once per run, receives the forecast one lead time at a
time (``write``), and on ``close`` returns the files it produced. It never
keeps more than a bounded number of steps in memory, so a 10-day 0.25-degree
run streams through it. ``abort`` discards whatever it wrote.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import xarray as xr

from fuxiops.catalog import Channel, VariableSet
from fuxiops.grids import Grid


@dataclass(frozen=True)
class RunMeta:
    """What a published run is: identity, grid, variables, lead times and provenance."""

    run_id: str
    """Cycle time as ``YYYYMMDDHH``."""
    reference_time: datetime
    """Cycle (reference) time, naive UTC."""
    grid: Grid
    variables: VariableSet
    steps: tuple[int, ...]
    """Lead times in hours that the forecast will yield, starting with 0 (the initial state)."""
    model: Mapping[str, Any] = field(default_factory=dict)
    """Model provenance (name, checkpoint, sha256, version...), copied into the products."""
    status: str = "complete"
    """Run status recorded in products (``complete``, ``cold_start``, ``degraded``...)."""
    deployment: str = "testbed"

    def channels_at(self, step: int) -> list[Channel]:
        """Channels present at a lead time: diagnostics (accumulations) only after step 0."""
        return self.variables.state_channels + (self.variables.diagnostic_channels if step > 0 else [])

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "reference_time": self.reference_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "grid": self.grid.name, "variables": self.variables.to_dict(), "steps": list(self.steps),
                "model": dict(self.model), "status": self.status, "deployment": self.deployment}


@dataclass(frozen=True)
class WrittenFile:
    """A product file (or directory store) a writer produced, relative to the run directory."""

    name: str
    format: str
    size: int = -1
    sha256: str = ""


@dataclass
class StepData:
    """One validated lead time: the dataset plus its step in hours."""

    step: int
    dataset: xr.Dataset


class ProductWriter(abc.ABC):
    """One output format. Lifecycle: ``open`` -> ``write`` per step (in order) -> ``close``."""

    #: Name used in configuration, in the manifest and by ``--formats``.
    format: str = ""

    @abc.abstractmethod
    def open(self, run: RunMeta, directory: Path) -> None:
        """Prepare to write ``run`` into ``directory`` (the run's temporary directory)."""

    @abc.abstractmethod
    def write(self, step: StepData) -> None:
        """Encode one lead time (already validated)."""

    @abc.abstractmethod
    def close(self) -> list[WrittenFile]:
        """Finish, flush and fsync; return the files written (sha256 may be left empty)."""

    def abort(self) -> None:
        """Release resources after a failure; the caller removes the directory."""
