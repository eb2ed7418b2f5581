"""Self-describing checkpoints: a directory with ``model.safetensors`` and ``metadata.json``.

The weights (including normalisation and static-field buffers) are
safetensors; the metadata says what the network is (kind, runtime, preset and
full architecture), what it reads and writes (variables, levels, grid, time
step, observation groups), its normalisation, where its static fields came
from, how it was trained, the package version and the weights' sha256. No
pickle anywhere. The loader refuses, with a message naming the problem, a
checkpoint of another format version or kind, a tampered weights file, or
weights that do not match the declared architecture.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from fuxiops import __version__
from fuxiops.models.base import CheckpointError, ModelCoords
from fuxiops.models.normalisation import NormStats
from fuxiops.models.presets import AssimilatorArch, ForecasterArch

FORMAT = "fuxiops-checkpoint"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
METADATA = "metadata.json"

Kind = Literal["forecaster", "assimilator"]


@dataclass(frozen=True)
class CheckpointMeta:
    """The content of ``metadata.json``."""

    kind: Kind
    preset: str
    architecture: dict[str, Any]
    coords: ModelCoords
    normalisation: NormStats
    static_source: str
    obs_channels: dict[str, int] = field(default_factory=dict)
    #: Assimilator only: the channels whose innovations feed the network (``Innovation.to_dict``).
    innovations: list[dict[str, Any]] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    runtime: str = "torch"
    package_version: str = __version__
    weights_sha256: str = ""
    created: str = ""

    def forecaster_arch(self) -> ForecasterArch:
        return ForecasterArch.from_dict(self.architecture)

    def assimilator_arch(self) -> AssimilatorArch:
        return AssimilatorArch.from_dict(self.architecture)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind, "runtime": self.runtime,
                "preset": self.preset, "architecture": self.architecture, "coords": self.coords.to_dict(),
                "channels": self.coords.variables.state_names
                if self.kind == "assimilator" else self.coords.variables.output_names,
                "normalisation": self.normalisation.to_dict(), "static_source": self.static_source,
                "obs_channels": dict(self.obs_channels), "innovations": list(self.innovations),
                "training": self.training,
                "package_version": self.package_version, "weights_sha256": self.weights_sha256,
                "created": self.created}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "checkpoint") -> "CheckpointMeta":
        if d.get("format") != FORMAT:
            raise CheckpointError(f"{where} is not a fuxiops checkpoint (format {d.get('format')!r})")
        if d.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{where} has checkpoint format version {d.get('format_version')}, this "
                                  f"fuxiops ({__version__}) reads version {FORMAT_VERSION}")
        try:
            return cls(kind=d["kind"], preset=d["preset"], architecture=d["architecture"],
                       coords=ModelCoords.from_dict(d["coords"]),
                       normalisation=NormStats.from_dict(d["normalisation"]), static_source=d["static_source"],
                       obs_channels={k: int(v) for k, v in d.get("obs_channels", {}).items()},
                       innovations=list(d.get("innovations", [])),
                       training=d.get("training", {}), runtime=d.get("runtime", "torch"),
                       package_version=d.get("package_version", "?"), weights_sha256=d["weights_sha256"],
                       created=d.get("created", ""))
        except KeyError as e:
            raise CheckpointError(f"{where}: metadata lacks {e}") from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(path: str | Path, module: Any, meta: CheckpointMeta) -> Path:
    """Write ``module``'s state dict and ``meta`` to the directory ``path`` atomically (temp dir + rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"format": FORMAT, "kind": meta.kind})
        d = meta.to_dict()
        d["weights_sha256"] = sha256_file(tmp / WEIGHTS)
        d["created"] = meta.created or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        (tmp / METADATA).write_text(json.dumps(d, indent=1))
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_metadata(path: str | Path) -> CheckpointMeta:
    p = Path(path)
    f = p / METADATA
    if not f.is_file():
        raise CheckpointError(f"{p} is not a checkpoint directory: {METADATA} is missing")
    try:
        d = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{f} is not valid JSON: {e}") from None
    return CheckpointMeta.from_dict(d, str(p))


def load_state(path: str | Path, meta: CheckpointMeta, verify: bool = True) -> dict[str, Any]:
    """The checked tensors of a checkpoint (safetensors only: no pickle is ever read)."""
    from safetensors.torch import load_file

    w = Path(path) / WEIGHTS
    if not w.is_file():
        raise CheckpointError(f"{path}: {WEIGHTS} is missing")
    if verify:
        digest = sha256_file(w)
        if digest != meta.weights_sha256:
            raise CheckpointError(f"{w} has sha256 {digest[:12]}..., metadata says {meta.weights_sha256[:12]}...: "
                                  "the weights were changed or corrupted")
    return load_file(str(w))


def load_into(module: Any, state: dict[str, Any], where: str) -> None:
    """Load a state dict strictly, turning shape / key mismatches into a CheckpointError."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    bad = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
           if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or extra or bad:
        raise CheckpointError(f"{where}: weights do not match the declared architecture "
                              f"(missing {missing[:3]}, unexpected {extra[:3]}, shape mismatch {bad[:3]})")
    module.load_state_dict(state, strict=True)


class TorchCheckpointed(ABC):
    """What the torch forecaster and assimilator share: provenance, checkpoint writing and the common
    checks of reading one back (kind, runtime, the static fields in the weights)."""

    kind: ClassVar[str]
    name: str
    preset: str
    checkpoint: str | None
    weights_sha256: str | None
    device: Any
    module: Any

    @abstractmethod
    def metadata(self, training: dict[str, Any] | None = None) -> "CheckpointMeta":
        """The checkpoint metadata of this network (kind-specific: architecture, channels, ...)."""

    def provenance(self) -> dict[str, Any]:
        return {"name": self.name, "runtime": "torch", "preset": self.preset, "checkpoint": self.checkpoint,
                "weights_sha256": self.weights_sha256, "device": str(self.device)}

    def save(self, path: str | Path, training: dict[str, Any] | None = None) -> Path:
        """Write a checkpoint directory (``training``: provenance such as data, steps, losses)."""
        return save_checkpoint(path, self.module, self.metadata(training))

    @classmethod
    def read_checked_metadata(cls, path: str | Path) -> "CheckpointMeta":
        meta = read_metadata(path)
        if meta.kind != cls.kind:
            article = "an" if cls.kind[0] in "aeiou" else "a"
            raise CheckpointError(f"{path} holds a {meta.kind}, not {article} {cls.kind}")
        if meta.runtime != "torch":
            raise CheckpointError(f"{path} is for runtime {meta.runtime!r}, not torch")
        return meta

    @staticmethod
    def load_weights(path: str | Path, meta: "CheckpointMeta") -> dict[str, Any]:
        state = load_state(path, meta)
        if "static" not in state:
            raise CheckpointError(f"{path}: weights lack the static fields")
        return state


def check_normalisation(module: Any, norm: NormStats, where: str) -> None:
    """The JSON normalisation (for readers) must equal the buffers in the weights (what runs)."""
    for k, v in norm.tensors().items():
        if not hasattr(module, k):
            continue
        buf = getattr(module, k).detach().cpu().numpy()
        if buf.shape != v.shape or not np.array_equal(buf, v.astype(np.float32)):
            raise CheckpointError(f"{where}: normalisation {k!r} in {METADATA} differs from the weights file")
