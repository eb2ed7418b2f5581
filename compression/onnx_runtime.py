"""The ONNX Runtime forecaster: an exported model behind the same :class:`Forecaster` interface.

``load_forecaster("model.onnx")`` (or ``models.forecaster: model.onnx`` in the
deployment configuration) returns an :class:`OnnxForecaster`; the cycle, the
rollout generator and the products do not know which runtime runs. Execution
providers are chosen from what the installed onnxruntime offers: TensorRT,
then CUDA, then CPU for ``device="cuda"``/``"auto"``; CPU for ``"cpu"``. On a
GPU, inputs and outputs are bound to device memory (IO binding) and the model
can be converted to float16: the normalised network body runs in fp16 while the
input normalisation and residual de-normalisation (physical units) stay fp32. Nothing here
imports torch: a serving image needs onnxruntime only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fuxiops.errors import FuxiopsError
from fuxiops.logs import get_logger
from fuxiops.models.base import CheckpointError, Forecaster, ModelCoords
from fuxiops.models.checkpoint import sha256_file
from fuxiops.models.features import clock_features

log = get_logger(__name__)

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - depends on the image
        raise FuxiopsError("the ONNX forecaster needs onnxruntime; install it with: pip install onnxruntime "
                           "(CPU) or pip install onnxruntime-gpu (CUDA/TensorRT)") from e
    return ort


def choose_providers(device: str = "auto", available: Sequence[str] | None = None,
                     fp16: bool = False) -> list[Any]:
    """Execution providers for ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``auto``), best first.

    ``auto`` uses a GPU provider when onnxruntime has one and falls back to CPU;
    ``cuda`` without a GPU provider is an error naming the package to install.
    """
    ort_available = list(available) if available is not None else list(_ort().get_available_providers())
    dev = device.lower()
    if dev not in ("cpu", "auto") and not dev.startswith("cuda"):
        raise FuxiopsError(f"unknown device {device!r} for the ONNX forecaster; allowed: cpu, cuda, cuda:N, auto")
    if dev == "cpu":
        return ["CPUExecutionProvider"]
    gpu_id = int(dev.split(":", 1)[1]) if ":" in dev else 0
    chosen: list[Any] = []
    if "TensorrtExecutionProvider" in ort_available:
        chosen.append(("TensorrtExecutionProvider", {"device_id": gpu_id, "trt_fp16_enable": bool(fp16),
                                                     "trt_engine_cache_enable": True}))
    if "CUDAExecutionProvider" in ort_available:
        chosen.append(("CUDAExecutionProvider", {"device_id": gpu_id}))
    if not chosen and dev.startswith("cuda"):
        raise FuxiopsError(f"device {device!r} asked for, but onnxruntime offers only {ort_available}; "
                           "install onnxruntime-gpu (pip install 'fuxiops[gpu]') on a machine with CUDA")
    chosen.append("CPUExecutionProvider")
    return chosen


class OnnxForecaster(Forecaster):
    """Runs an exported forecaster (``x (1, T, C, H, W)`` physical + ``clock (1, 4)`` -> ``(1, C_out, H, W)``)."""

    def __init__(self, path: str | os.PathLike[str], device: str = "auto", fp16: bool = False,
                 providers: Sequence[Any] | None = None, threads: int | None = None) -> None:
        from fuxiops.compression.onnx_export import read_metadata

        ort = _ort()
        self.path = Path(path)
        meta = read_metadata(self.path)
        if meta.get("kind") != "forecaster":
            raise CheckpointError(f"{self.path} holds a {meta.get('kind')!r} model, not a forecaster")
        try:
            self._coords = ModelCoords.from_dict(meta["checkpoint"]["coords"])
        except KeyError as e:
            raise CheckpointError(f"{self.path}: ONNX metadata lacks {e}; re-export the model") from None
        self.meta = meta
        self.providers = list(providers) if providers is not None else choose_providers(device, fp16=fp16)
        names = [p[0] if isinstance(p, tuple) else p for p in self.providers]
        self.on_gpu = names[0] in GPU_PROVIDERS
        self.fp16 = bool(fp16 and self.on_gpu)
        if fp16 and not self.on_gpu:
            log.warning("fp16 asked for on CPU: running fp32 (ONNX Runtime CPU kernels are fp32)",
                        extra={"fields": {"model": str(self.path)}})
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        source: Any = str(self.path)
        if self.fp16:
            # Only the normalised network body runs in fp16; normalisation and the residual stay fp32
            # (physical units such as MSL ~1e5 Pa exceed the fp16 range), see onnx_export._fp16_model.
            from fuxiops.compression.onnx_export import to_fp16_bytes
            source = to_fp16_bytes(self.path)
        self.session = ort.InferenceSession(source, sess_options=opts, providers=self.providers)
        self.active_providers = self.session.get_providers()
        self.on_gpu = self.active_providers[0] in GPU_PROVIDERS
        ins = {i.name: i for i in self.session.get_inputs()}
        want = list(meta.get("input_names", ["x", "clock"]))
        if sorted(ins) != sorted(want):
            raise CheckpointError(f"{self.path}: graph inputs {sorted(ins)} differ from its metadata {want}")
        self.input_names = want
        self.output_name = self.session.get_outputs()[0].name
        self.name = str(meta.get("name") or f"fuxiops-forecaster-{meta['checkpoint'].get('preset', 'onnx')}-onnx")
        self._sha = meta.get("onnx_sha256") or None
        self._binding = self.session.io_binding() if self.on_gpu else None
        log.info("ONNX forecaster ready", extra={"fields": {"model": str(self.path),
                                                            "providers": self.active_providers,
                                                            "fp16": self.fp16}})

    @property
    def coords(self) -> ModelCoords:
        return self._coords

    def _run(self, x: np.ndarray, clock: np.ndarray) -> np.ndarray:
        feeds = dict(zip(self.input_names, (x, clock)))
        if self._binding is None:
            return self.session.run([self.output_name], feeds)[0]
        ort = _ort()
        b = self._binding
        b.clear_binding_inputs()
        b.clear_binding_outputs()
        dev_id = 0
        for p in self.providers:
            if isinstance(p, tuple) and "device_id" in p[1]:
                dev_id = int(p[1]["device_id"])
                break
        for name, arr in feeds.items():
            b.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), "cuda", dev_id))
        b.bind_output(self.output_name, "cuda", dev_id)
        self.session.run_with_iobinding(b)
        return b.copy_outputs_to_cpu()[0]

    def step(self, inputs: np.ndarray, time: np.datetime64) -> np.ndarray:
        self.check_inputs_array(inputs)
        target = np.datetime64(time, "ns") + np.timedelta64(self.coords.step_hours, "h")
        x = np.ascontiguousarray(inputs, dtype=np.float32)[None]
        clock = clock_features(target)[None]
        y = self._run(x, clock)
        return np.asarray(y[0], dtype=np.float32)

    def provenance(self) -> dict[str, Any]:
        if self._sha is None:
            self._sha = sha256_file(self.path)
        return {"name": self.name, "runtime": "onnx", "preset": self.meta.get("checkpoint", {}).get("preset"),
                "checkpoint": str(self.path), "weights_sha256": self._sha, "onnx_sha256": self._sha,
                "providers": list(self.active_providers), "fp16": self.fp16,
                "source_checkpoint": self.meta.get("source"),
                "source_weights_sha256": self.meta.get("checkpoint", {}).get("weights_sha256")}


def load_onnx_forecaster(path: str | os.PathLike[str], device: str = "auto", **kwargs: Any) -> OnnxForecaster:
    """Registry factory of the ``onnx`` forecaster runtime (``fuxiops.models.base.FORECASTER_RUNTIMES``)."""
    return OnnxForecaster(path, device=device, **kwargs)
