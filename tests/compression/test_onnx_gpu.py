"""ONNX Runtime on a CUDA GPU (marker ``gpu``: not in the default run; ``pytest -m gpu`` on a GPU machine
with onnxruntime-gpu). Fails, not skips, where no CUDA provider is present: asked to check the GPU path,
it must not pass without one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fuxiops.compression.export import PARITY_TOLERANCE, export_forecaster, forecaster_example_inputs, output_scale
from fuxiops.compression.onnx_runtime import OnnxForecaster
from fuxiops.models.torch_forecaster import TorchForecaster

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("fp16, tolerance", [(False, PARITY_TOLERANCE), (True, 1e-2)])
def test_cuda_provider_parity(teacher_ckpt: Path, tmp_path: Path, fp16: bool, tolerance: float) -> None:
    path = tmp_path / "model.onnx"
    export_forecaster(teacher_ckpt, path, exporter="legacy")
    onx = OnnxForecaster(path, device="cuda", fp16=fp16)
    assert onx.active_providers[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider"), onx.active_providers
    assert onx.fp16 is fp16
    ref = TorchForecaster.load(teacher_ckpt)
    x, _ = forecaster_example_inputs(ref, seed=1)
    t = np.datetime64("2023-01-01T00", "ns")
    y = onx.step(x[0].numpy(), t)
    want = ref.step(x[0].numpy(), t)
    err = np.abs(y.astype(np.float64) - want) / output_scale(ref).reshape(-1, 1, 1)
    assert np.isfinite(y).all() and float(err.max()) <= tolerance
