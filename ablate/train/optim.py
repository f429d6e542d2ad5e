"""Optimizers and per-epoch learning-rate schedules, by name.

Every schedule is wrapped in `EpochSchedule`, stepped once per epoch with the validation
loss, so the training loop never branches on the schedule's kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, ReduceLROnPlateau

from ablate.config import TrainConfig
from ablate.errors import UserError
from ablate.registry import Registry

Params = Iterable[torch.nn.Parameter] | Iterable[dict]
OptimizerFactory = Callable[[Params, TrainConfig], Optimizer]
Scheduler = LRScheduler | ReduceLROnPlateau
ScheduleFactory = Callable[[Optimizer, TrainConfig], Scheduler | None]

OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")
SCHEDULES: Registry[ScheduleFactory] = Registry("schedule")

POLY_POWER = 0.9
PLATEAU_FACTOR = 0.5
PLATEAU_PATIENCE = 2


@OPTIMIZERS.register("adam")
def adam(params: Params, config: TrainConfig) -> Optimizer:
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


@OPTIMIZERS.register("adamw")
def adamw(params: Params, config: TrainConfig) -> Optimizer:
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


@OPTIMIZERS.register("sgd")
def sgd(params: Params, config: TrainConfig) -> Optimizer:
    if config.nesterov and config.momentum == 0:
        raise UserError("train.nesterov: Nesterov momentum needs train.momentum > 0")
    return torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )


@SCHEDULES.register("none")
def constant(optimizer: Optimizer, config: TrainConfig) -> Scheduler | None:
    """The learning rate stays at `train.lr`."""
    return None


@SCHEDULES.register("cosine")
def cosine(optimizer: Optimizer, config: TrainConfig) -> Scheduler | None:
    """lr_e = lr * (1 + cos(pi e / epochs)) / 2 after e epochs."""
    return CosineAnnealingLR(optimizer, T_max=config.epochs)


@SCHEDULES.register("poly")
def poly(optimizer: Optimizer, config: TrainConfig) -> Scheduler | None:
    """lr_e = lr * (1 - e / epochs) ** 0.9 after e epochs."""
    return LambdaLR(optimizer, lambda epoch: (1 - epoch / config.epochs) ** POLY_POWER)


@SCHEDULES.register("plateau")
def plateau(optimizer: Optimizer, config: TrainConfig) -> Scheduler | None:
    """Halve the lr when the validation loss has not improved for 2 epochs."""
    return ReduceLROnPlateau(
        optimizer, mode="min", factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE
    )


class EpochSchedule:
    """One interface for every schedule: `step(val_loss)` once per epoch, `lr` to log."""

    def __init__(self, optimizer: Optimizer, scheduler: Scheduler | None) -> None:
        self.optimizer = optimizer
        self.scheduler = scheduler

    def step(self, val_loss: float) -> None:
        """Advance one epoch; only the plateau schedule looks at `val_loss`."""
        if isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(val_loss)
        elif self.scheduler is not None:
            self.scheduler.step()

    @property
    def lr(self) -> float:
        """The learning rate of the first parameter group, as the next epoch will use it."""
        return float(self.optimizer.param_groups[0]["lr"])


def build_optimizer(params: Params, config: TrainConfig) -> Optimizer:
    """The optimizer `train.optimizer` names, with lr, weight decay (and SGD momentum).

    Example:
        >>> model = torch.nn.Linear(2, 1)
        >>> optimizer = build_optimizer(model.parameters(), TrainConfig(optimizer="sgd"))
        >>> optimizer.param_groups[0]["momentum"]
        0.9
    """
    return OPTIMIZERS.get(config.optimizer)(params, config)


def build_schedule(optimizer: Optimizer, config: TrainConfig) -> EpochSchedule:
    """The per-epoch schedule `train.schedule` names, over `train.epochs` epochs.

    Example:
        >>> optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
        >>> schedule = build_schedule(optimizer, TrainConfig(schedule="cosine", epochs=2))
        >>> schedule.step(val_loss=0.3)  # once per epoch
        >>> round(schedule.lr, 6)
        0.05
    """
    return EpochSchedule(optimizer, SCHEDULES.get(config.schedule)(optimizer, config))
