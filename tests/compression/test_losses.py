"""Properties of the entropy-corrected distillation loss and its baselines."""

from __future__ import annotations

import pytest
import torch

from fuxiops.compression.losses import (DistillationLoss, EntropyController, KDConfig, channel_entropy, channel_kl,
                                        lat_weighted_l1)
from fuxiops.errors import FuxiopsError


def _fields(seed: int, shape: tuple[int, ...] = (2, 3, 17, 32)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g)


def test_kl_zero_when_student_equals_teacher() -> None:
    t = _fields(0)
    assert float(channel_kl(t, t.clone(), tau=1.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(channel_kl(t, _fields(1), tau=1.0)) > 1e-3


def test_kl_zero_with_unit_controller_and_positive_otherwise() -> None:
    t = _fields(0)
    ctrl = EntropyController(3)
    assert float(channel_kl(t, t.clone(), 1.0, ctrl())) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        ctrl.log_scale.fill_(0.5)
    assert float(channel_kl(t, t.clone(), 1.0, ctrl())) > 1e-3


def test_area_weights_enter_the_distribution() -> None:
    # A uniform field gives a distribution proportional to cell area: polar rows get less mass.
    x = torch.zeros(1, 1, 17, 32)
    ent = channel_entropy(x, 1.0)
    uniform_entropy = torch.log(torch.tensor(17.0 * 32))
    assert float(ent[0]) < float(uniform_entropy)


def test_controller_gets_gradient_and_lowers_kd() -> None:
    teacher = _fields(0) * 2.0  # sharper than the student
    student = (_fields(0) + 0.1 * _fields(5)).requires_grad_(True)
    loss = DistillationLoss(3, KDConfig(method="dynamic", tau=1.0, kd_weight=1.0))
    total, parts = loss(student, teacher, _fields(2))
    total.backward()
    g = loss.controller.log_scale.grad
    assert g is not None and float(g.abs().sum()) > 0
    assert student.grad is not None and float(student.grad.abs().sum()) > 0
    # The controller alone can raise the student's sharpness: optimise it and the KL falls.
    opt = torch.optim.SGD(loss.controller.parameters(), lr=0.5)
    start = float(channel_kl(teacher, student.detach(), 1.0, loss.controller()))
    for _ in range(30):
        opt.zero_grad()
        channel_kl(teacher, student.detach(), 1.0, loss.controller()).backward()
        opt.step()
    end = float(channel_kl(teacher, student.detach(), 1.0, loss.controller()))
    assert end < 0.5 * start
    assert float(loss.controller.scale.mean()) > 1.2  # it learnt to sharpen


def test_forecast_is_not_rescaled() -> None:
    # The label term sees the raw student output: changing the controller leaves it unchanged.
    student, teacher, labels = _fields(0), _fields(1), _fields(2)
    loss = DistillationLoss(3, KDConfig(method="dynamic"))
    _, p1 = loss(student, teacher, labels)
    with torch.no_grad():
        loss.controller.log_scale.fill_(1.0)
    _, p2 = loss(student, teacher, labels)
    assert p1["l1"] == pytest.approx(p2["l1"]) == pytest.approx(float(lat_weighted_l1(student, labels)))
    assert p1["kd"] != pytest.approx(p2["kd"])


@pytest.mark.parametrize("method", ["none", "mse", "cwd", "dynamic"])
def test_methods(method: str) -> None:
    loss = DistillationLoss(3, KDConfig(method=method, mse_weight=0.1))
    total, parts = loss(_fields(0), _fields(1), _fields(2))
    assert torch.isfinite(total)
    assert ("kd" in parts) == (method != "none")
    assert (loss.controller is not None) == (method == "dynamic")


def test_bad_config() -> None:
    with pytest.raises(FuxiopsError, match="unknown distillation method"):
        KDConfig(method="fancy")  # type: ignore[arg-type]
    with pytest.raises(FuxiopsError, match="tau"):
        KDConfig(tau=0)
    with pytest.raises(FuxiopsError, match="needs teacher"):
        DistillationLoss(3, KDConfig(method="cwd"))(_fields(0), None, _fields(1))
