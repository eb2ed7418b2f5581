"""Residual conv blocks with a per-block inner width: old checkpoints unchanged, conv channel groups pruned."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fuxiops.compression.flops import count_flops, count_params
from fuxiops.compression.pruning.forecaster import ForecasterPruning
from fuxiops.compression.pruning.space import PruningPlan
from fuxiops.errors import ConfigError
from fuxiops.models.base import load_forecaster
from fuxiops.models.presets import ForecasterArch, get_preset, with_blocks

from .conftest import tiny_forecaster

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "checkpoints" / "2.8125deg" / "forecaster"
#: Output of the shipped checkpoint computed with the code before residual blocks had an inner width
#: (input: mean + std * N(0,1) seeded 0, clock fixed; every 8th row and 16th column kept).
REFERENCE = Path(__file__).resolve().parent / "data" / "small_forecaster_ref.npz"


def test_old_arch_dicts_round_trip() -> None:
    old = json.loads((SHIPPED / "metadata.json").read_text())["architecture"]
    assert "res_hidden" not in old
    arch = ForecasterArch.from_dict(old)
    assert arch.res_hidden == () and arch.down_hidden == arch.dim and arch.up_hidden == arch.embed_dim
    assert json.loads(json.dumps(arch.to_dict())) == old  # unpruned: exactly the old dict
    pruned = with_blocks(arch, arch.heads, arch.mlp_hidden, res_hidden=(96, 48))
    assert ForecasterArch.from_dict(json.loads(json.dumps(pruned.to_dict()))) == pruned
    assert with_blocks(arch, arch.heads, arch.mlp_hidden, res_hidden=(arch.dim, arch.embed_dim)) == arch
    with pytest.raises(ConfigError, match="multiple of the group size"):
        with_blocks(arch, arch.heads, arch.mlp_hidden, res_hidden=(100, 48))
    with pytest.raises(ConfigError, match="res_hidden"):
        ForecasterArch.from_dict({**old, "res_hidden": [96]})


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="shipped checkpoint not present")
def test_shipped_checkpoint_loads_with_identical_output() -> None:
    from safetensors.torch import load_file

    fc = load_forecaster(SHIPPED)
    m = fc.module
    stored = load_file(str(SHIPPED / "model.safetensors"))
    sd = m.state_dict()
    assert set(stored) == set(sd)
    assert all(torch.equal(sd[k], stored[k]) for k in stored)  # weights bit-identical
    g = torch.Generator().manual_seed(0)
    x = m.mean[:, None, None] + m.std[:, None, None] * torch.randn((1, 2, m.n_state, 65, 128), generator=g)
    clock = torch.tensor([[0.0, 1.0, 0.5, 0.8660254]])
    with torch.no_grad():
        y = m(x, clock)[0, :, ::8, ::16].numpy()
    ref = np.load(REFERENCE)["y"]
    # Same code path as before (bit-identical with one torch thread on the machine that made the
    # reference); other thread counts / CPUs reorder float32 sums, so compare in normalised units.
    std = m.std.numpy()[:, None, None]
    assert float((np.abs(y - ref) / std).max()) <= 1e-5


def test_conv_group_pruning_is_physical_and_exact(tmp_path: Path) -> None:
    fc = tiny_forecaster(0)
    teacher = fc.module
    net = ForecasterPruning(teacher, blocks_per_group=2)
    units = {u.name: u for u in net.units}
    # tiny: dim 32, embed 16, groups 4 -> GroupNorm groups of 8 and 4 channels.
    assert (units["down.res"].full, units["down.res"].group) == (4, 8)
    assert (units["up.res"].full, units["up.res"].group) == (4, 4)
    assert net.subnets == ["down", "blocks.0-1", "blocks.2-3", "up"]
    plan = PruningPlan({"down.res": [1, 3], "up.res": [2]})
    small = net.apply(plan)
    assert small.arch.res_hidden == (16, 4)
    assert small.net.down.res.conv1.conv.weight.shape[0] == 16
    assert small.net.down.res.norm2.num_groups == 2 and small.net.up.res.norm2.num_groups == 1
    from fuxiops.compression.export import forecaster_example_inputs
    x, clock = forecaster_example_inputs(fc, seed=3, batch=2)
    with torch.no_grad():
        y_t, y_s = teacher(x, clock), small(x, clock)
    assert y_s.shape == y_t.shape and torch.isfinite(y_s).all()
    assert count_flops(small, (x, clock)) < count_flops(teacher, (x, clock))
    assert count_params(small) < count_params(teacher)
    # Whole GroupNorm groups removed: the kept hidden channels are exactly the teacher's.
    import torch.nn.functional as F
    with torch.no_grad():
        e = torch.randn(1, 32, 4, 8)
        rt, rs = teacher.net.down.res, small.net.down.res
        ht = F.silu(rt.norm2(rt.conv1(F.silu(rt.norm1(e)))))
        hs = F.silu(rs.norm2(rs.conv1(F.silu(rs.norm1(e)))))
    kept = torch.cat([torch.arange(8, 16), torch.arange(24, 32)])
    torch.testing.assert_close(hs, ht[:, kept], rtol=1e-5, atol=1e-6)
    # A valid checkpoint: saved, reloaded, same output.
    from fuxiops.compression.prune import pruned_forecaster
    pruned_forecaster(fc, small, "conv").save(tmp_path / "p")
    back = load_forecaster(tmp_path / "p")
    assert back.arch.res_hidden == (16, 4)
    with torch.no_grad():
        assert torch.equal(back.module(x, clock), y_s)


def test_stages_compose_to_the_output() -> None:
    net = ForecasterPruning(tiny_forecaster(0).module, blocks_per_group=2)
    from fuxiops.compression.export import forecaster_example_inputs
    inputs = forecaster_example_inputs(tiny_forecaster(0), seed=1)
    feats = net.stage_forward(net.teacher, inputs)
    assert len(feats) == len(net.subnets) + 1
    with torch.no_grad():
        torch.testing.assert_close(feats[-1], net.output(net.teacher, inputs))
    assert len(net.stage_parameters(net.teacher, 0)) == len(list(net.teacher.net.down.parameters()))
    assert get_preset("tiny").forecaster.res_hidden == ()
