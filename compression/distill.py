"""Distillation training: a student learns from labels and a frozen teacher.

The loop is AdamW (FuXiWeather2's betas 0.9/0.95, weight decay 0.1 on the
student; none on the entropy controller), shows a progress bar and writes a
resumable training state every ``checkpoint_every`` steps. Batches come from a
``sample(step)`` function that is deterministic in the step, so a resumed run
sees the same batches it would have seen without the interruption.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from fuxiops.compression.losses import DistillationLoss, KDConfig
from fuxiops.compression.trainstate import load_train_state, read_train_info, save_train_state
from fuxiops.errors import FuxiopsError
from fuxiops.logs import get_logger

log = get_logger(__name__)

#: One batch: the network's positional inputs and the label tensor (B, C, H, W).
Batch = tuple[Sequence[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of a distillation run."""

    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    controller_lr: float | None = None
    """Learning rate of the entropy controller (default: ``lr``)."""
    warmup: int = 0
    """Linear warm-up steps, then cosine decay to 10 % of ``lr``."""
    grad_clip: float = 1.0
    checkpoint_every: int = 100
    seed: int = 0


@dataclass
class DistillResult:
    """What a run leaves behind: final step, loss history and the final controller scales."""

    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    controller_scale: list[float] | None = None
    resumed_from: int = 0


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    if cfg.warmup and step < cfg.warmup:
        return (step + 1) / cfg.warmup
    span = max(1, cfg.steps - cfg.warmup)
    progress = min(1.0, (step - cfg.warmup) / span)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def distill(student: nn.Module, teacher: nn.Module | None, sample: Callable[[int], Batch], n_channels: int,
            kd: KDConfig = KDConfig(), train: TrainConfig = TrainConfig(),
            state_dir: str | os.PathLike[str] | None = None, progress: bool = True,
            teacher_cache: Callable[[int], torch.Tensor] | None = None) -> DistillResult:
    """Train ``student`` in place with the loss of ``kd``; resume from ``state_dir`` if it holds a state.

    ``teacher`` is frozen (eval mode, no gradients). ``teacher_cache(step)``
    may supply precomputed teacher outputs instead of running the teacher.
    """
    if kd.method != "none" and teacher is None and teacher_cache is None:
        raise FuxiopsError(f"distillation method {kd.method!r} needs a teacher")
    torch.manual_seed(train.seed)
    loss_fn = DistillationLoss(n_channels, kd)
    groups: list[dict[str, Any]] = [{"params": [p for p in student.parameters() if p.requires_grad],
                                     "weight_decay": train.weight_decay, "lr": train.lr}]
    if loss_fn.controller is not None:
        groups.append({"params": list(loss_fn.controller.parameters()), "weight_decay": 0.0,
                       "lr": train.controller_lr or train.lr})
    base_lrs = [g["lr"] for g in groups]
    opt = torch.optim.AdamW(groups, betas=train.betas)
    modules: dict[str, nn.Module] = {"student": student, "loss": loss_fn}
    start, history = 0, []
    state_path = Path(state_dir) if state_dir else None
    if state_path is not None and (state_path / "state.json").is_file():
        prior = read_train_info(state_path) or {}
        if prior.get("kd") != asdict(kd):
            raise FuxiopsError(f"training state {state_path} was written for distillation {prior.get('kd')}, "
                               f"not {asdict(kd)}; use another state directory")
        info = load_train_state(state_path, modules, opt)
        start, history = int(info["step"]), list(info["history"])
        log.info("resuming distillation", extra={"fields": {"step": start, "state": str(state_path)}})
    if teacher is not None:
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    student.train()

    def checkpoint(step: int) -> None:
        if state_path is not None:
            save_train_state(state_path, modules, opt, {"step": step, "history": history, "kd": asdict(kd),
                                                        "train": asdict(train)})

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=train.steps, initial=start, desc=f"distill[{kd.method}]", unit="step")
    for step in range(start, train.steps):
        factor = _lr_factor(step, train)
        for g, lr in zip(opt.param_groups, base_lrs):
            g["lr"] = lr * factor
        inputs, labels = sample(step)
        out = student(*inputs)
        t_out = None
        if kd.method != "none":
            if teacher_cache is not None:
                t_out = teacher_cache(step)
            else:
                with torch.no_grad():
                    t_out = teacher(*inputs)  # type: ignore[misc]
        loss, parts = loss_fn(out, t_out, labels)
        if not torch.isfinite(loss):
            raise FuxiopsError(f"distillation diverged at step {step} (loss {float(loss)}); lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if train.grad_clip:
            nn.utils.clip_grad_norm_(student.parameters(), train.grad_clip)
        opt.step()
        parts["loss"] = float(loss.detach())
        history.append({"step": step, **parts})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{parts['loss']:.4f}", l1=f"{parts['l1']:.4f}")
        if (step + 1) % train.checkpoint_every == 0:
            checkpoint(step + 1)
    if bar is not None:
        bar.close()
    checkpoint(train.steps)
    student.eval()
    scale = loss_fn.controller.scale.detach().tolist() if loss_fn.controller is not None else None
    return DistillResult(steps=train.steps, history=history, controller_scale=scale, resumed_from=start)


def build_student(teacher: Any, preset: Any, seed: int = 0) -> Any:
    """A fresh forecaster of ``preset`` (a name or a ``ForecasterArch``) with the teacher's variables, grid,
    normalisation and static fields."""
    from fuxiops.models.features import StaticFields
    from fuxiops.models.torch_forecaster import TorchForecaster

    c = teacher.coords
    static = StaticFields(c.grid, teacher.module.static.cpu().numpy(), teacher.static_source)
    return TorchForecaster.build(preset, c.variables, c.grid, norm=teacher.norm, static=static, seed=seed,
                                 step_hours=c.step_hours)


def distill_checkpoint(teacher_ckpt: str | os.PathLike[str] | None, out: str | os.PathLike[str], series: Any,
                       student_preset: Any = None, student_ckpt: str | os.PathLike[str] | None = None,
                       kd: KDConfig = KDConfig(), train: TrainConfig = TrainConfig(), batch: int = 2,
                       state_dir: str | os.PathLike[str] | None = None, progress: bool = True,
                       teacher: Any = None, student: Any = None,
                       teacher_memo: dict[Any, torch.Tensor] | None = None) -> dict[str, Any]:
    """Distil a teacher checkpoint into a student (a preset, or an existing checkpoint such as a pruned
    teacher) on ``series`` (a :class:`~fuxiops.compression.data.StateSeries` of labels), save it to ``out``.

    The student learns in normalised units (the network's raw outputs, where the teacher's outputs are
    compared channel by channel); ``state_dir`` makes the run resumable. ``teacher_memo`` (a dict shared
    between runs) keeps the teacher's outputs per batch, so that several students trained on the same
    batches (same series, batch size and seed) run the teacher once.
    """
    from fuxiops.models.torch_forecaster import TorchForecaster

    if (student_preset is None) == (student_ckpt is None) and student is None:
        raise FuxiopsError("give exactly one of a student preset or a student checkpoint")
    if teacher is None and kd.method != "none":
        if teacher_ckpt is None:
            raise FuxiopsError(f"distillation method {kd.method!r} needs a teacher checkpoint")
        teacher = TorchForecaster.load(teacher_ckpt, device="cpu")
    if student is None:
        if student_ckpt is not None:
            student = TorchForecaster.load(student_ckpt, device="cpu")
        else:
            if teacher is None:
                raise FuxiopsError("a student preset needs a teacher (or labels' coordinates) to copy from")
            student = build_student(teacher, student_preset, seed=train.seed)
    if teacher is not None:
        teacher.coords.check_compatible(student.coords, "student")
    sc = student.coords
    if series.grid != sc.grid or series.variables.state_names != sc.variables.state_names:
        raise FuxiopsError(f"training series is on {series.grid.name} with {len(series.variables.state_names)} "
                           f"channels; the student expects {sc.grid.name} with {len(sc.variables.state_names)}")
    raw = series.sampler(batch, seed=train.seed)
    mod = student.module

    def target(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Labels in the network's output space: normalised tendency (residual) or normalised state.
        n = mod.n_state
        if mod.arch.residual:
            return (y[:, :n] - x[:, -1, :n] - mod.res_mean[:, None, None]) / mod.res_std[:, None, None]
        return (y[:, :n] - mod.mean[:, None, None]) / mod.std[:, None, None]

    def sample(step: int) -> Batch:
        (x, clock), y = raw(step)
        return (x, clock), target(x, y)

    class _Norm(nn.Module):
        def __init__(self, m: nn.Module) -> None:
            super().__init__()
            self.m = m

        def forward(self, x: torch.Tensor, clock: torch.Tensor) -> torch.Tensor:
            return self.m.forward_normalised(x, clock)[:, :mod.n_state]  # type: ignore[operator]

    t_net = _Norm(teacher.module.cpu()) if teacher is not None else None
    cache = None
    if teacher_memo is not None and t_net is not None:
        tag = (id(teacher.module), series.source, len(series), batch, train.seed)

        def cache(step: int) -> torch.Tensor:
            key = (*tag, step)
            if key not in teacher_memo:
                with torch.no_grad():
                    teacher_memo[key] = t_net(*sample(step)[0])
            return teacher_memo[key]

    result = distill(_Norm(mod), t_net, sample, mod.n_state, kd, train, state_dir, progress, teacher_cache=cache)
    info = {"method": kd.method, "kd": asdict(kd), "train": asdict(train), "teacher": str(teacher_ckpt),
            "data": series.source, "steps": result.steps, "final_loss": result.history[-1] if result.history else None,
            "controller_scale": result.controller_scale}
    student.module.eval()
    prev = student.training if isinstance(student.training, dict) else {}
    student.save(out, training={**prev, "distillation": info})
    return {"checkpoint": str(out), **info}
