"""The Prefect ``compress`` flow: prune -> distill -> export -> evaluate -> register.

Each stage is a task with persisted inputs on disk (checkpoint directories and
ONNX files under ``out_dir``); a stage whose output already exists is reused,
so a re-run after a failure continues from where it stopped. ``register``
copies the ONNX model (and its sidecar) into ``{home}/models/{grid}/compressed/``
and records it, with its scores and FLOPs, in ``{home}/models/registry.json``;
pointing ``models.forecaster`` at the registered ``.onnx`` switches the cycle
to it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

from prefect import flow, task

from fuxiops.errors import FuxiopsError


def _cfg(config_path: str | None) -> Any:
    from fuxiops.config import load_config
    return load_config(config_path)


@task(name="compress-prune")
def prune_task(teacher: str, out: str, flops_budget: float, data: str | None, config_path: str | None,
               method: str = "emo-pms", search: dict | None = None) -> dict:
    from fuxiops.compression.cli import resolve_series
    from fuxiops.compression.prune import prune_checkpoint
    from fuxiops.models.checkpoint import read_metadata
    from fuxiops.models.torch_forecaster import TorchForecaster

    if (Path(out) / "metadata.json").is_file():
        return {"checkpoint": out, "reused": True, **read_metadata(out).training.get("pruning", {})}
    t = TorchForecaster.load(teacher)
    series = resolve_series(data, _cfg(config_path), t.coords) if data else None
    from fuxiops.compression.pruning.emo_pms import EmoPmsConfig
    return prune_checkpoint(teacher, out, flops_budget, method=method, series=series,  # type: ignore[arg-type]
                            config=EmoPmsConfig(**(search or {})), teacher=t, progress=False)


@task(name="compress-distill")
def distill_task(teacher: str, student: str, out: str, data: str | None, steps: int,
                 config_path: str | None) -> dict:
    from fuxiops.compression.cli import resolve_series
    from fuxiops.compression.distill import TrainConfig, distill_checkpoint
    from fuxiops.compression.losses import KDConfig
    from fuxiops.models.torch_forecaster import TorchForecaster

    if (Path(out) / "metadata.json").is_file():
        return {"checkpoint": out, "reused": True}
    t = TorchForecaster.load(teacher)
    series = resolve_series(data, _cfg(config_path), t.coords)
    return distill_checkpoint(teacher, out, series, student_ckpt=student, kd=KDConfig(method="dynamic"),
                              train=TrainConfig(steps=steps, lr=3e-4, checkpoint_every=max(1, steps // 10)),
                              state_dir=out + ".train", teacher=t, progress=False)


@task(name="compress-export")
def export_task(checkpoint: str, out: str) -> dict:
    from fuxiops.compression.export import export_forecaster

    return export_forecaster(checkpoint, out)


@task(name="compress-evaluate")
def evaluate_task(models: list[str], truth: str | None, config_path: str | None, days: list[float],
                  inits: int) -> list[dict]:
    from fuxiops.compression.cli import resolve_series
    from fuxiops.compression.evaluate import evaluate
    from fuxiops.models.base import load_forecaster

    out = []
    series = None
    for m in models:
        fc = load_forecaster(m)
        if series is None:
            series = resolve_series(truth, _cfg(config_path), fc.coords, store="truth")
        out.append(evaluate(fc, series, days, n_inits=inits, name=m).to_dict())
    return out


@task(name="compress-register")
def register_task(onnx_path: str, name: str, home: str, info: dict) -> dict:
    from fuxiops.compression.onnx_export import read_metadata, sidecar_path
    from fuxiops.compression.onnx_runtime import _sha256

    meta = read_metadata(onnx_path)
    grid = meta["checkpoint"]["coords"]["grid"]
    if not name.replace("-", "").replace("_", "").isalnum():
        raise FuxiopsError(f"model name {name!r} may hold only letters, digits, '-' and '_'")
    dest_dir = Path(home).expanduser() / "models" / grid / "compressed" / name
    dest_dir.mkdir(parents=True, exist_ok=True)
    src = Path(onnx_path)
    dest = dest_dir / "model.onnx"
    for f in (src, src.with_name(src.name + ".data")):
        if f.exists():
            target = dest if f == src else dest.with_name("model.onnx.data")
            tmp = target.with_name(target.name + ".tmp")
            shutil.copyfile(f, tmp)
            os.replace(tmp, target)
    shutil.copyfile(sidecar_path(src), sidecar_path(dest))
    registry = Path(home).expanduser() / "models" / "registry.json"
    entries = json.loads(registry.read_text()) if registry.is_file() else []
    entry = {"name": name, "path": str(dest), "grid": grid, "runtime": "onnx", "sha256": _sha256(dest),
             "registered": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), **info}
    entries = [e for e in entries if e.get("name") != name] + [entry]
    tmp = registry.with_name(registry.name + ".tmp")
    tmp.write_text(json.dumps(entries, indent=1, default=str))
    os.replace(tmp, registry)
    return entry


@flow(name="compress")
def compress_flow(teacher: str, out_dir: str, flops_budget: float = 0.25, data: str | None = None,
                  truth: str | None = None, distill_steps: int = 200, register_as: str | None = None,
                  config_path: str | None = None, home: str | None = None,
                  days: tuple[float, ...] = (1, 3, 5, 10), inits: int = 4, prune_method: str = "emo-pms",
                  search: dict | None = None) -> dict:
    """Compress a forecaster checkpoint end to end and register the ONNX result.

    ``search`` overrides the EMO-PMS settings (pop_size, n_gen, top_k, constraint_steps, lr, seed).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pruned = prune_task(teacher, str(out / "pruned"), flops_budget, data, config_path, prune_method, search)
    distilled = distill_task(teacher, str(out / "pruned"), str(out / "distilled"), data, distill_steps,
                             config_path)
    exported = export_task(str(out / "distilled"), str(out / "model.onnx"))
    scores = evaluate_task([teacher, str(out / "model.onnx")], truth or data, config_path, list(days), inits)
    home = home or _cfg(config_path).home
    entry = register_task(str(out / "model.onnx"), register_as or f"{Path(teacher).name}-compressed", home,
                          {"teacher": teacher, "flops_fraction": pruned.get("flops_fraction"),
                           "parity": exported.get("parity_max_abs_normalised"), "scores": scores})
    return {"pruned": pruned.get("checkpoint", str(out / "pruned")), "distilled": distilled.get("checkpoint"),
            "onnx": exported["onnx"], "registered": entry["path"], "scores": scores}
