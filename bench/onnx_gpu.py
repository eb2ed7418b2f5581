"""GPU serving check of the ONNX forecaster (issue 11): parity and per-step latency, fp32 and fp16.

The device check prepared for a session lent a GPU machine (one short run):

    python bench/onnx_gpu.py                      # CUDA provider, testbed grid and 0.25 deg
    python bench/onnx_gpu.py --device cpu --grids 2.8125deg   # the same path on CPU (a dry run)

For each grid (the forecaster's own, and 0.25 deg with the same weights and that grid's static
fields) it exports the forecaster to ONNX and runs it through :class:`OnnxForecaster`, the runtime
the cycle uses (IO binding on GPU; fp16 keeps normalisation and the residual in fp32):

* parity: max |ONNX - PyTorch fp32 on CPU| in normalised units, fp32 (target <= 1e-4) and fp16;
* latency: per step, after warm-up, ``--steps`` timed steps (host -> device -> host included).

Writes bench/results/onnx_gpu[_cpu].{json,md}. Exits with code 2 naming the problem when the
device has no GPU execution provider (the `onnxruntime` wheel is CPU-only; `onnxruntime-gpu` is
the `gpu` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_facts, markdown_table, package_versions, summary, write_result  # noqa: E402
from compress_forecaster import at_grid  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
T0 = np.datetime64("2023-01-01T00", "ns")


def physical_inputs(module: Any, coords: Any, seed: int) -> tuple[Any, Any]:
    """Inputs around the normalisation mean on ``coords``'s grid (1, T, C, H, W) and the clock of the
    step from ``T0``."""
    import torch

    from fuxiops.models.features import clock_features

    g = torch.Generator().manual_seed(seed)
    shape = (1, coords.n_inputs, len(coords.variables.state_channels), *coords.grid.shape)
    x = (module.mean[:, None, None] + module.std[:, None, None] * torch.randn(shape, generator=g)).float()
    return x, torch.from_numpy(clock_features(T0 + np.timedelta64(coords.step_hours, "h"))[None])


def export_at(fc: Any, grid_name: str, out: Path) -> tuple[Any, Path]:
    """The forecaster's weights on ``grid_name``, exported with metadata naming that grid."""
    from fuxiops.compression.onnx_export import export_onnx
    from fuxiops.models.base import ModelCoords

    module = fc.module if grid_name == fc.coords.grid.name else at_grid(fc, grid_name)
    meta = fc.metadata().to_dict()
    meta["coords"]["grid"] = grid_name
    if not out.exists():
        export_onnx(module, physical_inputs(module, ModelCoords.from_dict(meta["coords"]), 0), out,
                    ["x", "clock"], ["y"],
                    {"kind": "forecaster", "name": f"{fc.name}-{grid_name}-onnx", "input_names": ["x", "clock"],
                     "output_names": ["y"], "checkpoint": meta, "source": "bench/onnx_gpu.py"},
                    exporter="legacy")
    return module, out


def check(module: Any, scale: np.ndarray, path: Path, device: str, fp16: bool, steps: int, providers: Any
          ) -> dict[str, Any]:
    """Parity vs PyTorch fp32 on CPU and per-step latency of one ONNX model on one device."""
    import torch

    from fuxiops.compression.onnx_runtime import OnnxForecaster

    onx = OnnxForecaster(path, device=device, fp16=fp16, providers=providers)
    x, clock = physical_inputs(module, onx.coords, seed=1)
    with torch.no_grad():
        ref = module.eval()(x, clock)[0].numpy().astype(np.float64)
    x = x[0]
    y = onx.step(x.numpy(), T0).astype(np.float64)
    err = np.abs(y - ref) / scale.reshape(-1, 1, 1)
    for _ in range(2):
        onx.step(x.numpy(), T0)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        onx.step(x.numpy(), T0)
        times.append(time.perf_counter() - t)
    return {"providers": list(onx.active_providers), "fp16": onx.fp16, "finite": bool(np.isfinite(y).all()),
            "parity_max_abs_normalised": float(np.nanmax(err)), "latency_s": summary(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(ROOT / "models/checkpoints/2.8125deg/forecaster"))
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (a dry run of the same path)")
    ap.add_argument("--tensorrt", action="store_true", help="also let TensorRT take the graph (engine builds "
                    "take minutes at 0.25 deg); default: CUDA provider only")
    ap.add_argument("--grids", default="2.8125deg,0.25deg")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--work", default="bench/work/onnx_gpu")
    a = ap.parse_args()
    import onnxruntime as ort

    from fuxiops.compression.export import output_scale
    from fuxiops.models.torch_forecaster import TorchForecaster

    available = ort.get_available_providers()
    if a.device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            print(f"no GPU execution provider: onnxruntime {ort.__version__} offers {available}; install "
                  "onnxruntime-gpu (pip install '.[gpu]') on a machine with CUDA", file=sys.stderr)
            raise SystemExit(2)
        trt = {"trt_fp16_enable": True, "trt_engine_cache_enable": True}
        providers: Any = ([("TensorrtExecutionProvider", trt)]
                          if a.tensorrt and "TensorrtExecutionProvider" in available else [])
        providers += [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    fc = TorchForecaster.load(a.checkpoint, device="cpu")
    scale = output_scale(fc)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    rows = []
    for grid in a.grids.split(","):
        module, path = export_at(fc, grid, work / f"forecaster-{grid}.onnx")
        for fp16 in (False, True):
            if fp16 and not a.device.startswith("cuda"):
                continue  # ONNX Runtime CPU runs fp16 graphs through slow reference kernels
            key = f"{grid}-{'fp16' if fp16 else 'fp32'}"
            print(f"[{time.strftime('%H:%M:%S')}] {key}", flush=True)
            r = check(module, scale, path, a.device, fp16, a.steps, providers)
            results[key] = r
            rows.append([grid, "fp16" if fp16 else "fp32", r["providers"][0],
                         f"{r['parity_max_abs_normalised']:.2e}", "yes" if r["finite"] else "NO",
                         f"{r['latency_s']['median'] * 1e3:.1f}", f"{r['latency_s']['min'] * 1e3:.1f}"])
    name = "onnx_gpu" if a.device.startswith("cuda") else "onnx_gpu_cpu"
    cmd = "python bench/onnx_gpu.py " + " ".join(sys.argv[1:])
    write_result(name, {"command": cmd, "machine": machine_facts(), "checkpoint": a.checkpoint,
                        "versions": package_versions(["onnxruntime", "onnxruntime-gpu", "onnx", "torch"]),
                        "available_providers": available, "results": results})
    md = "\n".join([f"# ONNX forecaster on {a.device}", "",
                    f"Checkpoint `{a.checkpoint}`; command `{cmd}`. Parity: max |ONNX - PyTorch fp32 (CPU)| in "
                    f"normalised units (target <= 1e-4 for fp32). Latency per step through OnnxForecaster "
                    f"(host -> device -> host), {a.steps} timed steps after 2 warm-ups.", "",
                    markdown_table(["grid", "precision", "provider", "parity", "finite", "ms/step (median)",
                                    "ms/step (min)"], rows), ""])
    (Path(__file__).resolve().parent / "results" / f"{name}.md").write_text(md)
    print(md)
    print(json.dumps({k: v["parity_max_abs_normalised"] for k, v in results.items()}))


if __name__ == "__main__":
    main()
