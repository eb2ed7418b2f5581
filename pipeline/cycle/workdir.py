"""The work directory of a run in progress: per-lead checkpoints so that a killed forecast resumes.

Each completed lead time is saved as ``leads/step_XXX.npy`` (float32 channel
array, written aside and renamed), after an ``inputs.json`` that fingerprints
the forecast's inputs (initial states, model, grid). A retried cycle resumes
after the last completed lead only if the fingerprint matches, so a resumed
run computes exactly what an uninterrupted run computes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from fuxiops.errors import ConfigError


def fingerprint(*arrays: np.ndarray, **meta: Any) -> str:
    """sha256 over array bytes (with shapes and dtypes) and JSON metadata."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunWorkDir:
    """``{runs}/{run_id}/``: lead checkpoints and scratch files of one run."""

    def __init__(self, runs_location: str, run_id: str) -> None:
        if "://" in runs_location and not runs_location.startswith("file://"):
            raise ConfigError(f"data.runs must be a local folder (work directories need rename and fsync), "
                              f"got {runs_location!r}")
        self.path = Path(runs_location.removeprefix("file://")).expanduser() / run_id
        self.leads_dir = self.path / "leads"

    def prepare(self, inputs_fingerprint: str) -> int:
        """Create the folder; keep completed leads only if they came from the same inputs. Returns kept count."""
        self.leads_dir.mkdir(parents=True, exist_ok=True)
        f = self.path / "inputs.json"
        if f.exists():
            try:
                old = json.loads(f.read_text()).get("fingerprint")
            except ValueError:
                old = None
            if old != inputs_fingerprint:
                shutil.rmtree(self.leads_dir)
                self.leads_dir.mkdir()
        atomic_write_bytes(f, json.dumps({"fingerprint": inputs_fingerprint}).encode())
        return len(self.completed_leads())

    def completed_leads(self) -> list[int]:
        """Steps whose checkpoints are complete, ascending, contiguous from 1."""
        have = sorted(int(p.stem.split("_")[1]) for p in self.leads_dir.glob("step_*.npy"))
        out = []
        for k, s in enumerate(have, start=1):
            if s != k:
                break
            out.append(s)
        return out

    def lead_path(self, step: int) -> Path:
        return self.leads_dir / f"step_{step:03d}.npy"

    def save_lead(self, step: int, array: np.ndarray) -> None:
        self._save(self.lead_path(step), array)

    def save_initial(self, array: np.ndarray) -> None:
        """The analysis (step 0 of the products), next to the leads."""
        self._save(self.leads_dir / "analysis.npy", array)

    def _save(self, path: Path, array: np.ndarray) -> None:
        tmp = path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}.npy")
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array, dtype=np.float32))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def load_lead(self, step: int) -> np.ndarray:
        return np.load(self.lead_path(step))

    def clean(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
