"""The training engine shared by all stages: optimiser, schedule, resumable state, DDP, metrics.

A stage supplies a model (one ``nn.Module`` holding every trained network), a
deterministic sample order and a loss function; the engine does the rest:

* AdamW (betas 0.9/0.95, weight decay 0.1 as FuXiWeather2), linear warmup then
  cosine decay, gradient clipping;
* resumable state every ``checkpoint_every`` steps (weights, optimiser,
  scheduler, step, the data position, RNG states) in safetensors + JSON, so
  that a run killed and resumed gives the same weights as an uninterrupted
  run with the same seed;
* DDP through ``torchrun`` (gloo on CPU, nccl on GPU): each rank takes its
  shard of every global batch and gradients are averaged;
* metrics to CSV and JSON, and a loss-curve PNG.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from fuxiops.errors import FuxiopsError
from fuxiops.logs import get_logger

log = get_logger("fuxiops.models.training")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and schedule of one stage."""

    lr: float = 3e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100
    total_steps: int = 1000
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    batch_size: int = 4
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0


def lr_factor(step: int, cfg: OptimConfig) -> float:
    """Linear warmup to 1, then cosine decay to ``min_lr_ratio`` at ``total_steps``."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, cfg.total_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases, norms and 1-D parameters (scales, biases of heads)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


# ---------------------------------------------------------------------------------------------
# Distributed
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1); gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size())


def average_gradients(model: torch.nn.Module, info: DistInfo) -> None:
    """All-reduce gradients (mean over ranks). Done by hand rather than with DDP's hooks so that
    the same code path serves recursive unrolling, where one step runs several forwards."""
    if info.world_size <= 1:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= info.world_size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def broadcast_parameters(model: torch.nn.Module, info: DistInfo) -> None:
    if info.world_size <= 1:
        return
    for t in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(t.data, src=0)


# ---------------------------------------------------------------------------------------------
# Resumable state
# ---------------------------------------------------------------------------------------------

def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _encode_rng(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    py = state["python"]
    npst = state["numpy"]
    tensors = {"rng.torch": state["torch"].clone(), "rng.numpy_keys": torch.from_numpy(npst[1].astype(np.int64))}
    meta = {"python": [py[0], list(py[1]), py[2]], "numpy": [npst[0], int(npst[2]), int(npst[3]), float(npst[4])]}
    return tensors, meta


def _decode_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = meta["numpy"]
    np.random.set_state((n[0], tensors["rng.numpy_keys"].numpy().astype(np.uint32), n[1], n[2], n[3]))
    torch.set_rng_state(tensors["rng.torch"])


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    state_meta: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        state_meta[str(pid)] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{pid}.{k}"] = v.detach().clone().contiguous()
            else:
                state_meta[str(pid)][k] = v
    return tensors, {"param_groups": sd["param_groups"], "state": state_meta}


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for pid, extra in meta["state"].items():
        state[int(pid)] = dict(extra)
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_training_state(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int,
                        extra: dict[str, Any]) -> None:
    """Atomically write ``path`` (a folder) with weights, optimiser, step and RNG states; no pickle."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    ot, ometa = _optimizer_tensors(opt)
    rt, rmeta = _encode_rng(_rng_state())
    save_file({**tensors, **ot, **rt}, str(tmp / "state.safetensors"))
    (tmp / "state.json").write_text(json.dumps({"step": step, "optimizer": ometa, "rng": rmeta, **extra}))
    if path.exists():
        old = path.with_name(path.name + ".old")
        if old.exists():
            _rmtree(old)
        path.rename(old)
        tmp.rename(path)
        _rmtree(old)
    else:
        tmp.rename(path)


def _rmtree(p: Path) -> None:
    import shutil

    shutil.rmtree(p, ignore_errors=True)


def load_training_state(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    tensors = load_file(str(path / "state.safetensors"))
    meta = json.loads((path / "state.json").read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    _load_optimizer(opt, tensors, meta["optimizer"])
    _decode_rng(tensors, meta["rng"])
    return meta


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------

LossFn = Callable[[torch.nn.Module, Any, int], tuple[torch.Tensor, dict[str, float]]]
LoadFn = Callable[[Sequence[int], int], Any]


@dataclass
class StageResult:
    steps: int
    wall_seconds: float
    samples_per_second: float
    final_metrics: dict[str, float]


def sample_order(n_samples: int, total_steps: int, batch_size: int, seed: int,
                 weights: Sequence[float] | None = None) -> Iterator[list[int]]:
    """Global batches of sample indices: seeded permutations, epoch after epoch (deterministic).

    With ``weights`` each epoch is ``n_samples`` seeded draws with replacement, sample ``i``
    drawn with probability proportional to ``weights[i]`` (mixing sources of unequal size).
    """
    if n_samples <= 0:
        raise FuxiopsError("the training set is empty: check the data period and stores")
    p = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (n_samples,) or not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
            raise FuxiopsError(f"sample weights must be {n_samples} finite non-negative numbers, not all zero")
        p = w / w.sum()
    rng = np.random.default_rng(seed)
    perm: list[int] = []
    for _ in range(total_steps):
        batch = []
        while len(batch) < batch_size:
            if not perm:
                perm = list(rng.permutation(n_samples) if p is None else rng.choice(n_samples, n_samples, p=p))
            batch.append(int(perm.pop()))
        yield batch


def train(model: torch.nn.Module, loss_fn: LossFn, n_samples: int, cfg: OptimConfig, out: Path,
          stage: str, info: DistInfo | None = None, resume: bool = True, progress: bool = True,
          stop_after: int | None = None, load_fn: LoadFn | None = None,
          weights: Sequence[float] | None = None) -> StageResult:
    """Run (or resume) one stage; ``loss_fn(model, batch, step)`` returns (loss, metrics).

    With ``load_fn(sample_indices, step)`` the batch is what it returns, read in a
    thread one step ahead so that reading the stores overlaps the previous step's
    compute (it must depend only on its arguments); without it the batch is the
    list of sample indices. ``stop_after`` ends the process-local run early after
    that many steps (for tests of resuming). ``weights`` biases the sample draws
    (see ``sample_order``).
    """
    from concurrent.futures import ThreadPoolExecutor

    info = info or init_distributed()
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    opt = make_optimizer(model, cfg)
    state_dir = out / "training_state"
    start = 0
    if resume and (state_dir / "state.json").is_file():
        meta = load_training_state(state_dir, model, opt)
        start = int(meta["step"])
        log.info("resumed %s at step %d", stage, start)
    broadcast_parameters(model, info)
    batches = sample_order(n_samples, cfg.total_steps, cfg.batch_size * info.world_size, cfg.seed, weights)
    metrics_path = out / "metrics.csv"
    if start == 0 and metrics_path.exists() and info.is_main:
        metrics_path.unlink()
    t0 = time.perf_counter()
    done = 0
    last: dict[str, float] = {}
    bar = tqdm(total=cfg.total_steps, initial=start, desc=stage, disable=not (progress and info.is_main),
               dynamic_ncols=True)
    model.train()
    plan = [(step, batch[info.rank::info.world_size]) for step, batch in enumerate(batches) if step >= start]
    if stop_after is not None:
        plan = plan[:stop_after]
    reader = ThreadPoolExecutor(1, thread_name_prefix=f"{stage}-data") if load_fn else None
    ahead = reader.submit(load_fn, plan[0][1], plan[0][0]) if reader and plan else None
    try:
        for j, (step, shard) in enumerate(plan):
            for g in opt.param_groups:
                g["lr"] = cfg.lr * lr_factor(step, cfg)
            opt.zero_grad(set_to_none=True)
            if reader and ahead is not None:
                batch_data = ahead.result()
                ahead = reader.submit(load_fn, plan[j + 1][1], plan[j + 1][0]) if j + 1 < len(plan) else None
            else:
                batch_data = shard
            loss, m = loss_fn(model, batch_data, step)
            if not torch.isfinite(loss):
                raise FuxiopsError(f"{stage}: loss became non-finite at step {step}; lower the learning rate")
            loss.backward()
            average_gradients(model, info)
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            done += 1
            last = {"loss": float(loss.detach()), "grad_norm": float(gnorm), "lr": opt.param_groups[0]["lr"], **m}
            if info.is_main and (step % cfg.log_every == 0 or step == cfg.total_steps - 1):
                _append_metrics(metrics_path, {"step": step, **last})
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.4f}")
            if (step + 1) % cfg.checkpoint_every == 0 or step == cfg.total_steps - 1:
                if info.is_main:
                    save_training_state(state_dir, model, opt, step + 1, {"stage": stage, "config": asdict(cfg)})
                if info.world_size > 1:
                    dist.barrier()
    finally:
        if reader:
            reader.shutdown(cancel_futures=True)
    bar.close()
    wall = time.perf_counter() - t0
    sps = done * cfg.batch_size * info.world_size / wall if wall > 0 else 0.0
    result = StageResult(steps=start + done, wall_seconds=wall, samples_per_second=sps, final_metrics=last)
    if info.is_main:
        (out / "metrics.json").write_text(json.dumps(asdict(result), indent=2))
        plot_losses(metrics_path, out / "loss.png", stage)
    return result


def _append_metrics(path: Path, row: dict[str, float]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def plot_losses(metrics_csv: Path, png: Path, title: str) -> None:
    """Loss curve (log scale) from the metrics CSV."""
    if not metrics_csv.exists():
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.read_csv(metrics_csv)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for col in [c for c in df.columns if c.startswith("loss")]:
        ax.plot(df["step"], df[col], label=col)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
