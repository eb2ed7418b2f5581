"""CLI (`fuxiops model ...`, `fuxiops forecast`), streaming Zarr output and the size summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from fuxiops.catalog import PRODUCTION, TESTBED
from fuxiops.grids import get_grid
from fuxiops.models.inference import run_forecast
from fuxiops.models.normalisation import compute_stats
from fuxiops.models.presets import get_preset
from fuxiops.models.summary import summarise_assimilator, summarise_forecaster
from fuxiops.models.torch_forecaster import TorchForecaster

from .conftest import SMALL_VARS, synthetic_states


@pytest.fixture
def cli():
    from fuxiops.cli import main
    main._register_groups()
    return main.app


def test_forecast_streams_to_zarr(tmp_path: Path, grid11) -> None:
    ds = synthetic_states(grid11, SMALL_VARS, n_times=4)
    ds.to_zarr(tmp_path / "init.zarr", consolidated=False)
    fc = TorchForecaster.build("tiny", SMALL_VARS, grid11, norm=compute_stats(ds, SMALL_VARS, grid11))
    seen: list[int] = []
    out = run_forecast(fc, tmp_path / "init.zarr", tmp_path / "fc.zarr", 3, time="2023-01-01T12",
                       progress=lambda i, s: seen.append(int(s.step)))
    assert seen == [0, 6, 12, 18]
    f = xr.open_zarr(out)
    assert f.sizes["step"] == 4 and list(f.step.values) == [0, 6, 12, 18]
    assert f.time.values == np.datetime64("2023-01-01T12", "ns")
    assert f.valid_time.values[-1] == np.datetime64("2023-01-02T06", "ns")
    assert f.attrs["status"] == "complete" and f.attrs["run_id"] == "2023010112" and f.attrs["grid"] == "11.25deg"
    expect = list(fc.rollout(ds, 3, time="2023-01-01T12"))
    np.testing.assert_array_equal(f["t"].isel(step=3).values, expect[3]["t"].values)
    assert not (tmp_path / ".fc.zarr.partial").exists()
    with pytest.raises(Exception, match="exists"):
        run_forecast(fc, tmp_path / "init.zarr", out, 1)


def test_cli_model_init_and_forecast(tmp_path: Path, fuxiops_home, cli, grid11) -> None:
    ds = synthetic_states(grid11, TESTBED, n_times=3)
    ds.to_zarr(tmp_path / "init.zarr", consolidated=False)
    r = CliRunner().invoke(cli, ["model", "init", str(tmp_path / "ck"), "--preset", "tiny", "--grid", "11.25deg",
                                 "--stats-from", str(tmp_path / "init.zarr")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["model", "inspect", str(tmp_path / "ck")])
    assert r.exit_code == 0 and "ok" in r.output and "11.25deg" in r.output, r.output
    r = CliRunner().invoke(cli, ["forecast", "--init", str(tmp_path / "init.zarr"), "--time", "2023-01-01T12",
                                 "--steps", "2", "--out", str(tmp_path / "fc.zarr"), "--checkpoint",
                                 str(tmp_path / "ck")])
    assert r.exit_code == 0, r.output
    assert xr.open_zarr(tmp_path / "fc.zarr").sizes["step"] == 3


def test_cli_forecast_without_default_checkpoint_says_so(tmp_path: Path, fuxiops_home, grid11) -> None:
    synthetic_states(grid11, TESTBED, n_times=2).to_zarr(tmp_path / "init.zarr", consolidated=False)
    p = subprocess.run([sys.executable, "-m", "fuxiops.cli.main", "forecast", "--init", str(tmp_path / "init.zarr"),
                        "--steps", "1", "--out", str(tmp_path / "fc.zarr")], capture_output=True, text=True)
    assert p.returncode == 2
    assert "no default forecaster checkpoint is shipped for grid '11.25deg'" in " ".join(p.stderr.split())


def test_cli_summary(cli, fuxiops_home) -> None:
    r = CliRunner().invoke(cli, ["model", "summary", "--preset", "tiny", "--grid", "11.25deg", "--json"])
    assert r.exit_code == 0, r.output
    assert '"network": "forecaster"' in r.output and '"network": "assimilator"' in r.output


def test_paper_preset_on_meta_matches_fuxi_size() -> None:
    """FuXi (C = 1536, 48 Swin-V2 blocks) has about 1.5 billion parameters per cascade stage."""
    p = get_preset("paper")
    s = summarise_forecaster(p.forecaster, PRODUCTION, get_grid("0.25deg"), "paper")
    assert 1.3e9 < s.parameters < 1.7e9
    assert s.tokens == "embedding 1536x180x360, Swin 1536x90x180"
    # Swin blocks dominate: 2 FLOPs per weight per token over 16200 tokens x 48 blocks.
    a = p.forecaster
    per_block_weights = a.dim * 3 * 24 * 64 + 24 * 64 * a.dim + 2 * a.dim * a.mlp_hidden[0]
    assert s.flops_per_step > 2 * per_block_weights * 90 * 180 * 48
    asm = summarise_assimilator(p.assimilator, PRODUCTION, get_grid("0.25deg"), preset="paper")
    assert asm.parameters > 0 and asm.flops_per_step > 0


def test_cli_module_is_light() -> None:
    code = ("import sys, fuxiops.models.cli, fuxiops.models.base; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
