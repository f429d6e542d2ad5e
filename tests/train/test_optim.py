"""Optimizers and schedules: each builds and steps; schedule learning rates at known epochs."""

from __future__ import annotations

import math
from typing import get_args

import pytest
import torch

from ablate.config import Optimizer, Schedule, TrainConfig
from ablate.errors import UserError
from ablate.train.optim import OPTIMIZERS, SCHEDULES, build_optimizer, build_schedule


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(4, 1)


def _train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad()
    model(torch.ones(2, 4)).square().mean().backward()
    optimizer.step()


def _lrs(config: TrainConfig, val_losses: list[float]) -> list[float]:
    """The lr in effect for each epoch, stepping with the given validation losses."""
    model = _model()
    optimizer = build_optimizer(model.parameters(), config)
    schedule = build_schedule(optimizer, config)
    lrs = []
    for val_loss in val_losses:
        lrs.append(schedule.lr)
        _train_step(model, optimizer)
        schedule.step(val_loss)
    return lrs


def test_registries_ship_the_config_choices() -> None:
    assert OPTIMIZERS.names() == list(get_args(Optimizer))
    assert SCHEDULES.names() == list(get_args(Schedule))


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_builds_and_steps(name: str) -> None:
    config = TrainConfig(optimizer=name, lr=0.1, weight_decay=0.01)
    model = _model()
    before = model.weight.detach().clone()
    optimizer = build_optimizer(model.parameters(), config)
    _train_step(model, optimizer)
    assert not torch.equal(before, model.weight)
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.1 and group["weight_decay"] == 0.01


def test_optimizer_types_and_sgd_options() -> None:
    params = list(_model().parameters())
    assert type(build_optimizer(params, TrainConfig(optimizer="adam"))) is torch.optim.Adam
    assert type(build_optimizer(params, TrainConfig(optimizer="adamw"))) is torch.optim.AdamW
    sgd = build_optimizer(params, TrainConfig(optimizer="sgd", momentum=0.8, nesterov=True))
    assert type(sgd) is torch.optim.SGD
    assert sgd.param_groups[0]["momentum"] == 0.8 and sgd.param_groups[0]["nesterov"]


def test_nesterov_without_momentum_is_a_user_error() -> None:
    config = TrainConfig(optimizer="sgd", nesterov=True, momentum=0)
    with pytest.raises(UserError, match=r"train\.nesterov"):
        build_optimizer(_model().parameters(), config)


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_every_schedule_builds_and_steps(name: str) -> None:
    lrs = _lrs(TrainConfig(schedule=name, lr=0.1, epochs=5), [1.0] * 5)
    assert len(lrs) == 5 and lrs[0] == 0.1
    assert all(0 <= lr <= 0.1 for lr in lrs)


def test_none_keeps_the_lr() -> None:
    assert _lrs(TrainConfig(schedule="none", lr=0.1, epochs=4), [1.0] * 4) == [0.1] * 4


def test_cosine_lr_at_known_epochs() -> None:
    lrs = _lrs(TrainConfig(schedule="cosine", lr=0.1, epochs=4), [1.0] * 4)
    expected = [0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert lrs == pytest.approx(expected)
    assert lrs[2] == pytest.approx(0.05)


def test_poly_lr_at_known_epochs() -> None:
    lrs = _lrs(TrainConfig(schedule="poly", lr=0.1, epochs=4), [1.0] * 4)
    assert lrs == pytest.approx([0.1, 0.1 * 0.75**0.9, 0.1 * 0.5**0.9, 0.1 * 0.25**0.9])
    assert lrs[2] == pytest.approx(0.05359, abs=1e-5)


def test_plateau_halves_after_two_epochs_without_improvement() -> None:
    # Best 1.0 at epoch 0; epochs 1-3 do not improve: the third bad epoch exceeds patience 2.
    lrs = _lrs(TrainConfig(schedule="plateau", lr=0.1, epochs=6), [1.0, 1.0, 1.0, 1.0, 0.5, 0.4])
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05])


def test_plateau_keeps_lr_while_improving() -> None:
    lrs = _lrs(TrainConfig(schedule="plateau", lr=0.1, epochs=5), [1.0, 0.9, 0.8, 0.7, 0.6])
    assert lrs == [0.1] * 5
