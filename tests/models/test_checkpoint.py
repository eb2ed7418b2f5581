"""Checkpoints: bit-exact round trip, compatibility checks, no pickle, default-checkpoint errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fuxiops.models.base import CheckpointError, load_assimilator, load_forecaster
from fuxiops.models.checkpoint import METADATA, WEIGHTS
from fuxiops.models.normalisation import compute_stats
from fuxiops.models.torch_assimilator import TorchAssimilator
from fuxiops.models.torch_forecaster import TorchForecaster
from fuxiops.state import to_channels

from .conftest import SMALL_VARS


@pytest.fixture
def saved(tmp_path: Path, grid11, states11) -> tuple[TorchForecaster, Path]:
    fc = TorchForecaster.build("tiny", SMALL_VARS, grid11, norm=compute_stats(states11, SMALL_VARS, grid11), seed=7)
    return fc, fc.save(tmp_path / "fc", training={"stage": "test", "steps": 0})


def test_round_trip_is_bit_exact(saved, states11) -> None:
    fc, path = saved
    fc2 = load_forecaster(path)
    assert isinstance(fc2, TorchForecaster)
    a, b = fc.module.state_dict(), fc2.module.state_dict()
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    x = to_channels(states11.isel(time=slice(0, 2)), SMALL_VARS.state_channels)
    t = states11.time.values[1]
    assert np.array_equal(fc.step(x, t), fc2.step(x, t))
    assert fc2.coords == fc.coords and fc2.preset == "tiny" and fc2.training == {"stage": "test", "steps": 0}
    meta = json.loads((path / METADATA).read_text())
    assert meta["normalisation"]["channels"] == SMALL_VARS.state_names
    assert meta["coords"]["grid"] == "11.25deg" and meta["architecture"]["heads"] == [2, 2]
    assert len(meta["weights_sha256"]) == 64 and meta["package_version"]


def test_tampered_weights_are_refused(saved) -> None:
    _, path = saved
    data = bytearray((path / WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (path / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_forecaster(path)


def test_incompatible_checkpoints_are_refused(saved, tmp_path: Path, grid5) -> None:
    _, path = saved
    meta = json.loads((path / METADATA).read_text())
    with pytest.raises(CheckpointError, match="for grid '11.25deg'"):
        load_forecaster(path, grid=grid5)
    with pytest.raises(CheckpointError, match="not an assimilator"):
        load_assimilator(path)
    bad = dict(meta, format_version=99)
    (path / METADATA).write_text(json.dumps(bad))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_forecaster(path)
    arch = dict(meta["architecture"], mlp_hidden=[64, 32])
    (path / METADATA).write_text(json.dumps(dict(meta, architecture=arch)))
    with pytest.raises(CheckpointError, match="do not match the declared architecture"):
        load_forecaster(path)
    (path / METADATA).write_text(json.dumps(meta))
    assert load_forecaster(path).preset == "tiny"
    with pytest.raises(CheckpointError, match="neither a checkpoint"):
        load_forecaster(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_forecaster(tmp_path / "nope")


def test_no_default_checkpoint_for_grid_is_a_clear_error() -> None:
    with pytest.raises(CheckpointError, match="no default forecaster checkpoint is shipped for grid '11.25deg'"):
        load_forecaster("default", grid="11.25deg")


def test_assimilator_round_trip(tmp_path: Path, grid11, states11) -> None:
    asm = TorchAssimilator.build("tiny", SMALL_VARS, grid11, {"synop": 2}, seed=1)
    asm2 = load_assimilator(asm.save(tmp_path / "asm"))
    assert asm2.obs_channels == {"synop": 2}
    bg = states11.isel(time=1)
    np.testing.assert_array_equal(asm.analyse(bg, None, bg.time.values)["t"].values,
                                  asm2.analyse(bg, None, bg.time.values)["t"].values)


def test_no_pickle_in_the_models_package() -> None:
    """Checkpoints are safetensors + JSON: nothing in fuxiops.models may unpickle."""
    import fuxiops.models
    root = Path(fuxiops.models.__file__).parent
    for f in root.rglob("*.py"):
        text = f.read_text()
        assert "import pickle" not in text and "weights_only=False" not in text, f
        assert "torch.load(" not in text or "weights_only=True" in text, f
