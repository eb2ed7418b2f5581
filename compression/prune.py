"""Pruning a forecaster checkpoint into a smaller checkpoint (EMO-PMS or a baseline).

``prune_checkpoint`` loads the teacher, draws calibration inputs (from a state
series when one is given, else around the normalisation means), runs the
chosen method to the FLOP budget and saves the physically smaller network as
a regular checkpoint (same loader, same runtime) whose ``training`` metadata
records how it was made.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from fuxiops.compression.data import StateSeries
from fuxiops.compression.flops import count_flops, count_params
from fuxiops.compression.pruning.baselines import magnitude_prune, uniform_prune, whole_network_search
from fuxiops.compression.pruning.emo_pms import EmoPmsConfig, Evaluator, constraint_training, emo_pms
from fuxiops.compression.pruning.forecaster import ForecasterPruning
from fuxiops.errors import FuxiopsError

PruneMethod = Literal["emo-pms", "magnitude", "uniform", "whole-nsga2"]
PRUNE_METHODS = ("emo-pms", "magnitude", "uniform", "whole-nsga2")


def calibration_inputs(fc: Any, series: StateSeries | None, batch: int = 4, seed: int = 0
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``(x, clock)`` for measuring errors: real states when available, else mean + std * noise."""
    if series is not None:
        (x, clock), _ = series.sampler(batch, seed=seed)(0)
        return x, clock
    from fuxiops.compression.export import forecaster_example_inputs
    return forecaster_example_inputs(fc, seed=seed, batch=batch)


def pruned_forecaster(teacher: Any, module: torch.nn.Module, preset_suffix: str) -> Any:
    from fuxiops.models.torch_forecaster import TorchForecaster

    return TorchForecaster(module, teacher.coords, teacher.norm, f"{teacher.preset}-{preset_suffix}",
                           teacher.static_source, "cpu")


def prune_checkpoint(teacher_ckpt: str | os.PathLike[str], out: str | os.PathLike[str], flops_budget: float,
                     method: PruneMethod = "emo-pms", series: StateSeries | None = None,
                     config: EmoPmsConfig = EmoPmsConfig(), blocks_per_group: int = 2, calib_batch: int = 4,
                     max_evaluations: int | None = None, fine_tune_steps: int | None = None,
                     progress: bool = True, teacher: Any = None) -> dict[str, Any]:
    """Prune ``teacher_ckpt`` to ``flops_budget`` (FLOPs per step, or a fraction <= 1 of the teacher's)
    and save the result to ``out``. Returns the report also written into the checkpoint metadata.

    ``fine_tune_steps`` applies the same cross-network constraint training to a baseline
    (default: the EMO-PMS config's steps for emo-pms, none for baselines).
    """
    from fuxiops.models.torch_forecaster import TorchForecaster

    if method not in PRUNE_METHODS:
        raise FuxiopsError(f"unknown pruning method {method!r}; allowed: {', '.join(PRUNE_METHODS)}")
    if flops_budget <= 0:
        raise FuxiopsError(f"FLOP budget must be > 0 (absolute, or a fraction of the teacher), got {flops_budget}")
    fc = teacher or TorchForecaster.load(teacher_ckpt, device="cpu")
    net = ForecasterPruning(fc.module.cpu().eval(), blocks_per_group=blocks_per_group)
    calib = calibration_inputs(fc, series, calib_batch, seed=config.seed)
    ev = Evaluator(net, calib)
    sampler = None
    if series is not None:
        s = series.sampler(calib_batch, seed=config.seed + 1)
        sampler = lambda step: s(step)[0]  # noqa: E731 - inputs only
    report: dict[str, Any] = {"method": method, "teacher": str(teacher_ckpt), "flops_budget": flops_budget,
                              "teacher_flops": ev.teacher_flops, "teacher_params": count_params(fc.module)}
    if method == "emo-pms":
        res = emo_pms(net, calib, flops_budget, config, batches=sampler, progress=progress, evaluator=ev)
        model, counts = res.model, res.counts
        report.update(error_before_training=res.error_before_training,
                      error_after_training=res.error_after_training,
                      fronts={fr.subnet: {"flops": fr.flops, "errors": fr.errors, "counts": fr.counts}
                              for fr in res.fronts})
    else:
        if method == "magnitude":
            b = magnitude_prune(ev, flops_budget)
        elif method == "uniform":
            b = uniform_prune(ev, flops_budget)
        else:
            b = whole_network_search(ev, flops_budget, max_evaluations or config.pop_size * config.n_gen * 2,
                                     config.pop_size, config.seed)
        model, counts = b.model, b.counts
        report["error_before_training"] = b.error
        steps = fine_tune_steps or 0
        if steps:
            constraint_training(net, model, sampler or (lambda step: calib), steps, config.lr, progress)
            with torch.no_grad():
                from fuxiops.compression.losses import lat_weighted_mse
                report["error_after_training"] = float(lat_weighted_mse(net.output(model.eval(), calib),
                                                                        ev.teacher_out))
    report["n_evaluations"] = ev.n_evaluations
    report["counts"] = counts
    report["flops"] = float(count_flops(model, calib))
    report["flops_fraction"] = report["flops"] / ev.teacher_flops
    report["params"] = count_params(model)
    arch = model.arch
    report["heads"], report["mlp_hidden"] = list(arch.heads), list(arch.mlp_hidden)
    report["res_hidden"] = [arch.down_hidden, arch.up_hidden]
    student = pruned_forecaster(fc, model, "pruned")
    training = {**fc.training, "pruning": _jsonable(report)} if isinstance(fc.training, dict) else \
        {"pruning": _jsonable(report)}
    student.save(out, training=training)
    report["checkpoint"] = str(Path(out))
    return report


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x
