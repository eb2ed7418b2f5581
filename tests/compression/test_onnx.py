"""ONNX export (checker, metadata, parity) and the ONNX Runtime forecaster as a drop-in."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from fuxiops.compression.export import PARITY_TOLERANCE, export_forecaster
from fuxiops.compression.onnx_export import read_metadata, sidecar_path
from fuxiops.compression.onnx_runtime import OnnxForecaster, choose_providers
from fuxiops.errors import FuxiopsError
from fuxiops.models.base import load_forecaster

from .conftest import initial_state


@pytest.fixture(scope="module")
def exported(teacher_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    report = export_forecaster(teacher_ckpt, out, exporter="legacy")
    return out, report


def test_export_checker_clean_with_metadata(exported: tuple[Path, dict]) -> None:
    path, report = exported
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    assert model.opset_import[0].version >= 18
    meta = read_metadata(path)
    assert meta["kind"] == "forecaster"
    assert meta["checkpoint"]["coords"]["grid"] == "11.25deg"
    assert meta["checkpoint"]["normalisation"]["channels"][0] == "z500"
    assert json.loads(sidecar_path(path).read_text()) == meta
    assert report["parity_max_abs_normalised"] <= PARITY_TOLERANCE


def test_external_data(teacher_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "ext.onnx"
    export_forecaster(teacher_ckpt, out, exporter="legacy", external_data=True)
    assert (tmp_path / "ext.onnx.data").stat().st_size > 0
    assert out.stat().st_size < (tmp_path / "ext.onnx.data").stat().st_size
    fc = load_forecaster(out)
    assert fc.coords.grid.name == "11.25deg"


@pytest.fixture(scope="module")
def exported_dynamo(teacher_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("onnx") / "d.onnx"
    return out, export_forecaster(teacher_ckpt, out, exporter="dynamo")


def test_dynamo_exporter_parity(exported_dynamo: tuple[Path, dict]) -> None:
    assert exported_dynamo[1]["parity_max_abs_normalised"] <= PARITY_TOLERANCE


def test_onnx_rollout_matches_torch(exported: tuple[Path, dict], teacher_ckpt: Path) -> None:
    path, _ = exported
    ort_fc = load_forecaster(str(path), grid="11.25deg")
    assert isinstance(ort_fc, OnnxForecaster)
    torch_fc = load_forecaster(teacher_ckpt)
    init = initial_state(3)
    std = np.array([3.0e3, 1.5e3, 11.0, 13.0, 15.0, 1.1e3])
    n = 0
    for a, b in zip(ort_fc.rollout(init, 4), torch_fc.rollout(init, 4)):
        assert int(a["step"]) == int(b["step"])
        for i, v in enumerate(["z", "t"]):
            d = np.abs(a[v].values - b[v].values).max(axis=(-1, -2)) / std[2 * i:2 * i + 2]
            assert d.max() <= 1e-3  # 4 autoregressive steps: still far below a tenth of a per-mille of std
        assert a.attrs["model"].endswith("-onnx")
        n += 1
    assert n == 5
    assert ort_fc.provenance()["runtime"] == "onnx"


def test_provider_choice() -> None:
    assert choose_providers("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    got = choose_providers("auto", ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
                           fp16=True)
    assert [p[0] if isinstance(p, tuple) else p for p in got] == ["TensorrtExecutionProvider",
                                                                   "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert got[0][1]["trt_fp16_enable"] is True
    assert choose_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(FuxiopsError, match="onnxruntime-gpu"):
        choose_providers("cuda", ["CPUExecutionProvider"])
    with pytest.raises(FuxiopsError, match="unknown device"):
        choose_providers("tpu", ["CPUExecutionProvider"])


def test_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(FuxiopsError, match="not a readable ONNX model"):
        load_forecaster(bad)
    with pytest.raises(FuxiopsError, match="does not exist"):
        load_forecaster(tmp_path / "missing.onnx")


@pytest.mark.parametrize("spread_km", [0.0, 1500.0])
def test_assimilator_export_parity(tmp_path: Path, spread_km: float) -> None:
    from fuxiops.compression.export import export_assimilator
    from fuxiops.models.torch_assimilator import TorchAssimilator

    from .conftest import GRID, VARS

    # synop observes t2m directly: the exported graph includes the innovation branch (and, with
    # spread_km, the successive-correction term on it).
    asm = TorchAssimilator.build("tiny", VARS, GRID, obs_channels={"synop": 3, "temp": 2},
                                 channel_names={"synop": ["t2m", "t2m_mask", "rh"], "temp": ["a", "b"]},
                                 spread_km=spread_km)
    assert asm.innovations
    asm.save(tmp_path / "asm")
    rep = export_assimilator(tmp_path / "asm", tmp_path / "asm.onnx", exporter="legacy")
    assert rep["parity_max_abs_normalised"] <= PARITY_TOLERANCE
    meta = read_metadata(tmp_path / "asm.onnx")
    assert meta["kind"] == "assimilator" and meta["obs_groups"] == ["synop", "temp"]
    with pytest.raises(FuxiopsError, match="not a forecaster"):
        load_forecaster(tmp_path / "asm.onnx")



def _naive_fp16_outputs(path: Path, feeds: dict) -> np.ndarray:
    """The whole graph converted to fp16 (what the split conversion avoids)."""
    import onnxruntime as ort
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from fuxiops.compression.onnx_export import FP16_OP_BLOCK_LIST

    half = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True, op_block_list=list(FP16_OP_BLOCK_LIST))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(half.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_fp16_keeps_physical_units_in_fp32(exporter: str, request: pytest.FixtureRequest, teacher_ckpt: Path,
                                           tmp_path: Path) -> None:
    from fuxiops.compression.export import FP16_TOLERANCE, forecaster_example_inputs, fp16_parity, output_scale
    from fuxiops.compression.onnx_export import split_body, to_fp16
    from fuxiops.models.torch_forecaster import TorchForecaster

    path = request.getfixturevalue("exported" if exporter == "legacy" else "exported_dynamo")[0]
    fc = TorchForecaster.load(teacher_ckpt)
    inputs = forecaster_example_inputs(fc, seed=4)
    # The inputs are physical: MSL ~1.01e5 Pa and z ~5.5e4 overflow / lose fp16 precision.
    assert float(inputs[0][:, :, 5].min()) > 65504
    par = fp16_parity(path, output_scale(fc), inputs)
    assert par["finite"]
    assert par["max_abs_normalised"] <= FP16_TOLERANCE, par  # z500, z850, t500, t850, t2m, msl all within
    assert len(par["per_channel"]) == 6 and par["per_channel"][5] <= FP16_TOLERANCE  # msl
    assert par["max_abs_normalised"] > 0  # really fp16 arithmetic inside
    # Converting the whole graph (physical units in fp16) is what breaks: inf/NaN or far off.
    feeds = {"x": inputs[0].numpy(), "clock": inputs[1].numpy()}
    naive = _naive_fp16_outputs(path, feeds)
    assert not np.isfinite(naive).all() or np.abs(naive[0, 5] - 1.0e5).max() > 1e3
    # The body is the normalised network; the prologue/epilogue (physical units) stay fp32.
    model = onnx.load(str(path))
    body, b_in, b_out = split_body(model.graph)
    assert "x" not in b_in and "clock" not in b_in and len(b_in) == 2 and len(b_out) == 1
    half = onnx.load(str(to_fp16(path, tmp_path / "m.fp16.onnx")))
    onnx.checker.check_model(half, full_check=True)
    dtypes = {t.data_type for t in half.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in dtypes
    big32 = [t.name for t in half.graph.initializer if t.data_type == onnx.TensorProto.FLOAT
             and np.abs(onnx.numpy_helper.to_array(t)).max() > 65504]
    assert big32  # the normalisation means (z, msl) are still fp32 constants
