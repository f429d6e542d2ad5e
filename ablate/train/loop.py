"""The training loop: one flat function, epoch after epoch, early stopping on a monitor split.

With deep supervision the training loss is the weighted mean over the main and auxiliary
heads (`DeepSupervisionLoss`); the monitor loss is the main head's alone, like evaluation.
The loss is accumulated on the device and read once per epoch (with the validation numbers),
so the loop never waits for the accelerator inside an epoch. A NaN or infinite loss ends the
run as diverged; the caller decides what that means for the metrics.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from ablate.config import Task, TrainConfig
from ablate.train.device import DevicePlan
from ablate.train.evaluate import VAL_SCORES, Loss, class_targets, evaluate_loss
from ablate.train.losses import deep_supervision_loss
from ablate.train.optim import EpochSchedule

HISTORY_COLUMNS = [
    "epoch",
    "train_loss",
    "val_loss",
    *(f"val_{name}" for name in VAL_SCORES),
    "lr",
    "seconds",
]


@dataclass
class FitResult:
    """What training produced; the model itself holds the selected weights."""

    status: str
    """"ok" or "diverged" (a NaN/inf training or monitor loss)."""
    epochs: int
    """Epochs trained (fewer than train.epochs after early stopping or divergence)."""
    best_epoch: int | None
    """Epoch whose weights the model holds: the lowest monitor loss with early stopping,
    the last epoch without; None when no epoch finished cleanly."""
    history: list[dict[str, Any]] = field(default_factory=list)


def _loss_target(mask: torch.Tensor, category: torch.Tensor, task: Task) -> torch.Tensor:
    """The loss's target: float (B, 1, h, w) for binary, class labels (B, h, w) otherwise."""
    target = class_targets(mask, category, task)
    return target.unsqueeze(1).float() if task == "binary" else target


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    monitor_loader: DataLoader,
    loss_fn: Loss,
    optimizer: Optimizer,
    schedule: EpochSchedule,
    *,
    train: TrainConfig,
    task: Task,
    num_categories: int,
    plan: DevicePlan,
    history: list[dict[str, Any]],
    writer: Any | None = None,
) -> FitResult:
    """Train `model` in place for up to `train.epochs` epochs.

    Args:
        model: the network, already on `plan.device`.
        train_loader: training batches (image at training size, mask at training size).
        monitor_loader: the split early stopping watches (validation, or test when the
            protocol has no validation split).
        loss_fn: loss(logits, target) from `build_loss`. A model with deep supervision
            (`model.deep_supervision`) trains on `DeepSupervisionLoss` over its main and
            auxiliary logits (`model.forward_with_aux`), weighted by train.aux_weight and
            train.aux_decay; the monitor loss is always the main head's.
        optimizer: from `build_optimizer`.
        schedule: from `build_schedule`, stepped once per epoch with the monitor loss.
        train: epochs and patience (None: no early stopping, the last weights are kept).
        task: binary or multiclass.
        num_categories: categories of the dataset (groups of the monitor Dice).
        plan: device, autocast and memory format.
        history: list that receives one row per epoch as it finishes (kept by the caller
            even if training raises).
        writer: a tensorboardX SummaryWriter, or None.

    Returns:
        FitResult; the model holds the weights of `best_epoch`.

    Example:
        >>> result = fit(model, train_loader, val_loader, loss_fn, optimizer, schedule,
        ...              train=config.train, task="binary", num_categories=6, plan=plan,
        ...              history=[])
    """
    deep = deep_supervision_loss(model, loss_fn, train)
    patience = train.patience
    best_loss, best_epoch, best_state, stale = math.inf, None, None, 0
    status, epoch = "ok", 0

    for epoch in range(1, train.epochs + 1):
        started = time.perf_counter()
        lr = schedule.lr  # the rate this epoch trains with
        model.train()
        loss_sum = torch.zeros((), device=plan.device)
        seen = 0
        for batch in train_loader:
            images = plan.to_device(batch["image"], image=True)  # (B, 3, h, w)
            target = _loss_target(
                plan.to_device(batch["mask"]), plan.to_device(batch["category"]), task
            )
            with plan.autocast():
                if deep is None:
                    logits = model(images)  # (B, C, h, w)
                else:
                    logits, aux = model.forward_with_aux(images)  # aux: levels 2..depth
            loss = loss_fn(logits, target) if deep is None else deep(logits, aux, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().float() * images.shape[0]
            seen += images.shape[0]

        train_loss = loss_sum / max(seen, 1)
        val_loss, val_scores = evaluate_loss(
            model, monitor_loader, loss_fn, task, num_categories, plan
        )
        # The one host sync of the epoch.
        train_value, val_value, *score_values = torch.cat(
            [train_loss.view(1), val_loss.view(1), val_scores]
        ).tolist()
        row = {
            "epoch": epoch,
            "train_loss": train_value,
            "val_loss": val_value,
            **{f"val_{name}": value for name, value in zip(VAL_SCORES, score_values, strict=True)},
            "lr": lr,
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        if writer is not None:
            _log_epoch(writer, row)

        if not math.isfinite(train_value) or not math.isfinite(val_value):
            status = "diverged"
            break
        schedule.step(val_value)
        if patience is None:
            best_epoch = epoch
            continue
        if val_value < best_loss:
            best_loss, best_epoch, stale = val_value, epoch, 0
            # Cloned, not referenced: the optimizer keeps updating the live tensors.
            best_state = {
                name: value.detach().clone() for name, value in model.state_dict().items()
            }
        else:
            stale += 1
            if stale >= patience:
                break

    if status == "ok" and best_state is not None:
        model.load_state_dict(best_state)
    return FitResult(status=status, epochs=epoch, best_epoch=best_epoch, history=history)


def _log_epoch(writer: Any, row: dict[str, Any]) -> None:
    """Scalars of one epoch for TensorBoard."""
    step = row["epoch"]
    writer.add_scalar("loss/train", row["train_loss"], step)
    if math.isfinite(row["val_loss"]):
        writer.add_scalar("loss/val", row["val_loss"], step)
        for name in VAL_SCORES:
            writer.add_scalar(f"{name}/val", row[f"val_{name}"], step)
    writer.add_scalar("lr", row["lr"], step)
    writer.add_scalar("seconds/epoch", row["seconds"], step)
