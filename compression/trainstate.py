"""Resumable training state on disk without pickle: tensors in safetensors, the rest in JSON.

Used by distillation and by the cross-network constraint training of EMO-PMS:
a training state directory holds the trained modules, the optimizer state and
the step counter and history, so an interrupted run continues where it stopped.
Writes are atomic (written aside, then renamed) so a crash never leaves a
half-written state.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from fuxiops.errors import FuxiopsError


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_load(opt: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        idx, _, name = key.partition(".")
        state.setdefault(int(idx), {})[name] = v
    for idx, sc in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(sc)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_train_state(path: str | os.PathLike[str], modules: Mapping[str, nn.Module], optimizer: torch.optim.Optimizer,
                     info: Mapping[str, Any]) -> None:
    """Write modules, optimizer and ``info`` (JSON-serialisable: step, history...) to ``path`` atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for name, mod in modules.items():
        save_file({k: v.detach().cpu().contiguous() for k, v in mod.state_dict().items()},
                  str(tmp / f"{name}.safetensors"))
    tensors, meta = _optimizer_tensors(optimizer)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(json.dumps({"info": dict(info), "optimizer": meta}, indent=1))
    old = path.with_name(path.name + ".old")
    if path.exists():
        if old.exists():
            shutil.rmtree(old)
        path.rename(old)
    tmp.rename(path)
    if old.exists():
        shutil.rmtree(old)


def load_train_state(path: str | os.PathLike[str], modules: Mapping[str, nn.Module],
                     optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore what :func:`save_train_state` wrote; returns its ``info``."""
    path = Path(path)
    if not (path / "state.json").is_file():
        raise FuxiopsError(f"{path} is not a training state directory (no state.json)")
    meta = json.loads((path / "state.json").read_text())
    for name, mod in modules.items():
        f = path / f"{name}.safetensors"
        if not f.is_file():
            raise FuxiopsError(f"training state {path} lacks {f.name}; it was written for other modules")
        try:
            mod.load_state_dict(load_file(str(f)))
        except RuntimeError as e:
            raise FuxiopsError(f"training state {path} does not fit module {name!r}: {e}") from None
    _optimizer_load(optimizer, load_file(str(path / "optimizer.safetensors")), meta["optimizer"])
    return dict(meta["info"])


def read_train_info(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``info`` of a training state directory, or None when there is none yet."""
    f = Path(path) / "state.json"
    if not f.is_file():
        return None
    return dict(json.loads(f.read_text())["info"])
