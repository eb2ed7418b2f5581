"""The ``fuxiops compress`` commands end to end on a tiny teacher, and their input errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fuxiops.compression.cli import app
from fuxiops.errors import FuxiopsError
from fuxiops.models.base import load_forecaster


def test_prune_export_evaluate(teacher_ckpt: Path, tmp_path: Path, fuxiops_home: Path) -> None:
    runner = CliRunner()
    pruned = tmp_path / "pruned"
    r = runner.invoke(app, ["prune", "--teacher", str(teacher_ckpt), "--flops-budget", "0.93", "--out", str(pruned),
                            "--method", "uniform"])
    assert r.exit_code == 0, r.output
    assert "flops_fraction" in r.output and "res_hidden" in r.output
    onnx_path = tmp_path / "pruned.onnx"
    r = runner.invoke(app, ["export", "--checkpoint", str(pruned), "--out", str(onnx_path), "--exporter", "legacy",
                            "--fp16-copy"])
    assert r.exit_code == 0, r.output
    assert "fp16 max abs" in r.output
    assert load_forecaster(onnx_path).coords.grid.name == "11.25deg"
    half = load_forecaster(tmp_path / "pruned.fp16.onnx", device="cpu")  # fp16 file loads like any model
    assert half.coords.grid.name == "11.25deg"
    scores = tmp_path / "scores.json"
    r = runner.invoke(app, ["evaluate", str(teacher_ckpt), str(onnx_path), "--truth", "synthetic:16",
                            "--days", "1,2", "--inits", "1", "--json", str(scores)])
    assert r.exit_code == 0, r.output
    got = json.loads(scores.read_text())
    assert [g["name"] for g in got] == [str(teacher_ckpt), str(onnx_path)]
    assert set(got[0]["rmse"]) == {"z500", "t850", "t2m", "msl"}  # u10 is not in the tiny variable set


def test_bad_input_is_a_clear_error(teacher_ckpt: Path, tmp_path: Path, fuxiops_home: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["evaluate", str(teacher_ckpt), "--truth", "world"])
    assert isinstance(r.exception, FuxiopsError) and "no testbed world" in str(r.exception)
    r = runner.invoke(app, ["prune", "--teacher", str(teacher_ckpt), "--flops-budget", "0.5", "--out",
                            str(tmp_path / "x"), "--method", "random"])
    assert isinstance(r.exception, FuxiopsError) and "unknown pruning method" in str(r.exception)
    # Through the real entry point: exit code 2 and a one-line message, no traceback.
    p = subprocess.run([sys.executable, "-m", "fuxiops.cli.main", "compress", "export", "--checkpoint",
                        str(tmp_path / "missing"), "--out", str(tmp_path / "m.onnx")], capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    assert "missing" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_compress_flow(teacher_ckpt: Path, tmp_path: Path, fuxiops_home: Path) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from fuxiops.compression.flow import compress_flow

    with prefect_test_harness(server_startup_timeout=120):
        res = compress_flow(teacher=str(teacher_ckpt), out_dir=str(tmp_path / "c"), flops_budget=0.93,
                            data="synthetic:20", distill_steps=2, register_as="tiny-c", home=str(fuxiops_home),
                            days=(1,), inits=1, prune_method="uniform")
    assert Path(res["registered"]).is_file()
    reg = json.loads((fuxiops_home / "models" / "registry.json").read_text())
    assert reg[0]["name"] == "tiny-c" and reg[0]["runtime"] == "onnx"
    assert load_forecaster(res["registered"]).coords.grid.name == "11.25deg"
