"""The training loop on its own: divergence mid-run, schedules in the history, no monitor."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ablate.data.ebhi import SegmentationData
from ablate.data.loader import build_eval_loader, build_train_loader
from ablate.models import build_model
from ablate.train.device import plan_device
from ablate.train.evaluate import Loss
from ablate.train.loop import HISTORY_COLUMNS, FitResult, fit
from ablate.train.losses import build_loss
from ablate.train.optim import build_optimizer, build_schedule
from ablate.train.run import run_split

from .conftest import tiny_config


def _fit_parts(root: Path, data: SegmentationData, **train: object) -> dict:
    config = tiny_config(root, train=train)
    split = run_split(config, data, seed=0)
    torch.manual_seed(0)
    model = build_model(config.model, out_channels=1)
    optimizer = build_optimizer(model.parameters(), config.train)
    return {
        "config": config,
        "model": model,
        "train_loader": build_train_loader(
            data, split.train, config.augment, config.train, 0, 0, False, None
        ),
        "val_loader": build_eval_loader(data, split.val, config.train, 0, False, None),
        "optimizer": optimizer,
        "schedule": build_schedule(optimizer, config.train),
    }


def _fit(parts: dict, loss_fn: Loss) -> FitResult:
    config = parts["config"]
    return fit(
        parts["model"],
        parts["train_loader"],
        parts["val_loader"],
        loss_fn,
        parts["optimizer"],
        parts["schedule"],
        train=config.train,
        task="binary",
        num_categories=6,
        plan=plan_device(config.train, "cpu"),
        history=[],
    )


def test_a_nan_loss_mid_run_ends_it_as_diverged(
    synthetic_root: Path, synthetic_data: SegmentationData
) -> None:
    parts = _fit_parts(synthetic_root, synthetic_data, epochs=5)
    dice = build_loss("dice", "binary")
    calls = {"train": 0}

    def poisoned(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Training batches carry gradients; from the third epoch on, their loss is NaN.
        if logits.requires_grad:
            calls["train"] += 1
            if calls["train"] > 2 * len(parts["train_loader"]):
                return dice(logits, target) * math.nan
        return dice(logits, target)

    result = _fit(parts, poisoned)
    assert result.status == "diverged"
    assert result.epochs == 3
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert math.isnan(result.history[-1]["train_loss"])
    assert all(math.isfinite(row["train_loss"]) for row in result.history[:2])


def test_history_logs_the_learning_rate_of_each_epoch(
    synthetic_root: Path, synthetic_data: SegmentationData
) -> None:
    parts = _fit_parts(synthetic_root, synthetic_data, epochs=3, schedule="cosine", lr=0.01)
    result = _fit(parts, build_loss("dice", "binary"))
    assert result.status == "ok"
    assert list(result.history[0]) == HISTORY_COLUMNS
    lrs = [row["lr"] for row in result.history]
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[0] > lrs[1] > lrs[2] > 0
    assert lrs[1] == pytest.approx(0.01 * (1 + math.cos(math.pi / 3)) / 2)
