"""One run: one configuration, one seed, from the split to per-category test metrics.

`execute_run` is what a Ray trial (and `ablate train`) calls for each seed. It never raises
for problems of the run itself: an exception becomes status "failed" with its message, a
NaN/inf loss becomes "diverged", so one broken variant cannot stop a study.
"""

from __future__ import annotations

import io
import os
import secrets
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ablate.config import RunConfig
from ablate.data.ebhi import SegmentationData
from ablate.data.inputs import RunImages
from ablate.data.loader import ChannelStats, build_eval_loader, build_train_loader, channel_stats
from ablate.data.split import Split, split_indices
from ablate.errors import out_of_space
from ablate.models import build_model, output_channels
from ablate.train.device import DevicePlan, plan_device, seed_everything
from ablate.train.evaluate import predict_counts_and_loss
from ablate.train.loop import HISTORY_COLUMNS, fit
from ablate.train.losses import build_loss
from ablate.train.metrics import class_metrics, empty_class_metrics, empty_image_metrics
from ablate.train.optim import build_optimizer, build_schedule
from ablate.train.tensorboard import log_overlays, open_writer

MAX_AUTO_WORKERS = 4
TRAINING_STREAM = 1
"""Spawn key of the training stream's torch seed (see `_training_stream_seed`)."""


@dataclass
class RunOutputs:
    """Where a run writes its files (local paths)."""

    checkpoint_dir: Path
    """initial.pt (before training) and best.pt (the evaluated weights): state_dicts."""
    tensorboard_dir: Path


@dataclass
class RunResult:
    """Everything one run produced; the store turns it into Parquet rows."""

    status: str
    """"ok", "failed" or "diverged"."""
    error: str | None
    """"ExceptionType: message" for failed runs, a short reason for diverged ones."""
    epochs: int
    best_epoch: int | None
    duration_s: float
    device: str
    history: pd.DataFrame
    """epoch, train_loss, val_loss, val_dice, lr, seconds."""
    image_metrics: pd.DataFrame
    """image, category, class_name, tp, fp, fn, tn (empty unless status is "ok")."""
    class_metrics: pd.DataFrame
    """category, tp, fp, fn, tn, dice, iou, precision, recall, accuracy, conformity."""
    early_stopping_split: str = "val"
    """Split early stopping watched: "val", "test" (val_fraction 0: test numbers are
    optimistic) or "none" (patience None: every epoch trained, last weights kept)."""
    test_loss: float | None = None
    """Mean training loss function over the test images with the kept weights (native
    resolution, eval mode); None unless status is "ok"."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Sizes of the split and the worker count, for the log."""


def worker_count(configured: int | None, cpus: float, cuda: bool = False) -> int:
    """DataLoader workers: `train.num_workers` if set, else sized from the trial's CPUs.

    On CUDA the spare CPUs (at most 4) feed the GPU. On CPU the model is the bottleneck
    (the loader is 15-50x faster than a training step), so small trials load in the main
    process and leave every core to torch; from 3 CPUs on, one worker overlaps loading.
    """
    if configured is not None:
        return configured
    cpus = int(cpus)
    if cuda:
        return 0 if cpus <= 1 else min(cpus - 1, MAX_AUTO_WORKERS)
    return 0 if cpus <= 2 else 1


def torch_threads(cpus: float, workers: int) -> int:
    """Intra-op threads for torch: the trial's CPUs less those its loader workers use.

    More threads than cores (threads + workers > cpus) slows CPU training several-fold.
    """
    return max(1, int(cpus) - workers)


def early_stopping_split(config: RunConfig) -> str:
    """Which split early stopping watches under `config` (see RunResult)."""
    if config.train.patience is None:
        return "none"
    return "test" if config.protocol.early_stops_on_test else "val"


@dataclass(frozen=True)
class RunSeeds:
    """The seed of each source of randomness of one run (`protocol.vary`)."""

    split: int
    """Draws the train/validation/test split."""
    init: int
    """Draws the initial weights."""
    order: int
    """Draws the training stream: data order, augmentation, dropout."""


def run_seeds(config: RunConfig, seed: int) -> RunSeeds:
    """What run `seed` seeds: each source the protocol varies gets `seed`, each fixed one
    the study's first seed (`protocol.first_seed`), so fixed sources are equal across seeds.

    Example:
        >>> run_seeds(config_with_split_fixed, 7)  # doctest: +SKIP
        RunSeeds(split=0, init=7, order=7)
    """
    vary, first = config.protocol.vary, config.protocol.first_seed
    return RunSeeds(
        split=seed if vary.split else first,
        init=seed if vary.init else first,
        order=seed if vary.order else first,
    )


def run_split(config: RunConfig, data: SegmentationData, seed: int) -> Split:
    """The split of run `seed`: depends on the data, the seed and the protocol only, never on
    the model or the recipe, so every variant of a study sees the same images for a seed
    (and every seed the same images with `protocol.vary.split` false)."""
    protocol = config.protocol
    return split_indices(
        data.category_ids,
        run_seeds(config, seed).split,
        protocol.test_fraction,
        protocol.val_fraction,
    )


def _training_stream_seed(order: int) -> int:
    """The global torch seed of the training stream (dropout), apart from the init stream
    even when both come from the same run seed."""
    return int(np.random.SeedSequence([order, TRAINING_STREAM]).generate_state(1)[0])


@dataclass
class RunInputs:
    """What a run's loaders read: its images and their standardisation."""

    images: RunImages
    """Input mode and stain normalisation (fitted on the training split only)."""
    stats: ChannelStats | None
    """The training split's channel statistics when `augment.normalize`, else None."""


def run_inputs(config: RunConfig, data: SegmentationData, split: Split) -> RunInputs:
    """The inputs of a run: `augment.input`, `augment.stain_norm` and `augment.normalize`,
    every reference (stain, channel statistics) estimated from the training split alone.
    Evaluation and the analyses of the run (sample predictions, pruning) use the same."""
    augment = config.augment
    images = RunImages.fit(data.images, split.train, augment.input, augment.stain_norm)
    stats = channel_stats(images.model_input(split.train)) if augment.normalize else None
    return RunInputs(images, stats)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A state_dict on the CPU, loadable anywhere with torch.load(weights_only=True)."""
    return {name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()}


def save_checkpoint(state: dict[str, torch.Tensor], path: Path) -> None:
    """The state, serialised in memory, written to a new file beside `path`, then renamed
    onto it.

    The rename replaces whatever `path` was, a symbolic link included, instead of writing
    through it: a crafted link in a study or run folder cannot send a checkpoint elsewhere.
    A crash mid-write leaves the old checkpoint (or none), never half a file. Serialising
    first makes a full disk an OSError (errno 28) from the plain write, which stops a study
    cleanly; torch's own writer reports it as an opaque zip error.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    temporary = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        with open(temporary, "xb") as stream:  # "x": a new file, never a planted name
            stream.write(buffer.getbuffer())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def execute_run(
    config: RunConfig,
    data: SegmentationData,
    seed: int,
    outputs: RunOutputs | None = None,
    cpus: float = 1,
    device: str | torch.device | None = None,
) -> RunResult:
    """Train and evaluate one configuration for one seed.

    Args:
        config: the run's configuration.
        data: the decoded dataset (shared by all runs of a study).
        seed: fixes the split, the initial weights and the training stream (data order,
            augmentation, dropout); a source `protocol.vary` fixes takes the study's first
            seed instead (`run_seeds`).
        outputs: where to write checkpoints and TensorBoard events; None writes nothing.
        cpus: CPUs of this run (threads, DataLoader workers).
        device: None picks CUDA when available, else CPU.

    Returns:
        RunResult; status "ok", "failed" (an exception, message in `error`) or "diverged".

    Example:
        >>> result = execute_run(grid.run_config(), load_data(grid.data), seed=0)
        >>> result.class_metrics[["category", "dice"]]
    """
    started = time.perf_counter()
    plan = plan_device(config.train, device)
    history: list[dict[str, Any]] = []
    result = RunResult(
        status="failed",
        error=None,
        epochs=0,
        best_epoch=None,
        duration_s=0.0,
        device=plan.device.type,
        history=pd.DataFrame(columns=HISTORY_COLUMNS),
        image_metrics=empty_image_metrics(),
        class_metrics=empty_class_metrics(),
        early_stopping_split=early_stopping_split(config),
    )
    try:
        result.device = plan.describe()
        _train_and_evaluate(config, data, seed, outputs, cpus, plan, history, result)
    except Exception as error:  # a broken run must not stop the study
        if out_of_space(error):
            # the machine's problem, not the variant's: the study stops (and the same
            # command continues it once there is room) instead of recording a failed run
            raise
        result.status = "failed"
        result.error = f"{type(error).__name__}: {error}"
        result.extras["traceback"] = traceback.format_exc()
    result.history = pd.DataFrame(history, columns=HISTORY_COLUMNS)
    result.duration_s = time.perf_counter() - started
    return result


def _train_and_evaluate(
    config: RunConfig,
    data: SegmentationData,
    seed: int,
    outputs: RunOutputs | None,
    cpus: float,
    plan: DevicePlan,
    history: list[dict[str, Any]],
    result: RunResult,
) -> None:
    """The body of `execute_run`; fills `result` and `history` in place."""
    task = config.protocol.task
    seeds = run_seeds(config, seed)
    workers = worker_count(config.train.num_workers, cpus, cuda=plan.is_cuda)
    seed_everything(seeds.order, cpus=torch_threads(cpus, workers), device=plan.device)
    split = run_split(config, data, seed)
    inputs = run_inputs(config, data, split)
    stats, images = inputs.stats, inputs.images
    pin = plan.pin_memory
    train_loader = build_train_loader(
        data, split.train, config.augment, config.train, seeds.order, workers, pin, stats, images
    )
    test_loader = build_eval_loader(data, split.test, config.train, workers, pin, stats, images)
    val_loader = (
        build_eval_loader(data, split.val, config.train, workers, pin, stats, images)
        if len(split.val)
        else None
    )
    result.extras.update(
        train=len(split.train), val=len(split.val), test=len(split.test), workers=workers
    )

    # Initial weights depend on the init seed and the architecture only; the training
    # stream (dropout) then restarts from the order seed, so each follows its own source.
    torch.manual_seed(seeds.init)
    model = build_model(config.model, output_channels(task, data.categories), images.channels)
    torch.manual_seed(_training_stream_seed(seeds.order))
    if outputs is not None:
        outputs.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(_cpu_state(model), outputs.checkpoint_dir / "initial.pt")
    model = model.to(plan.device)
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)
    network = torch.compile(model) if config.train.compile else model

    optimizer = build_optimizer(model.parameters(), config.train)
    schedule = build_schedule(optimizer, config.train)
    loss_fn = build_loss(config.train.loss, task)
    writer = open_writer(outputs.tensorboard_dir) if outputs is not None else None
    try:
        fitted = fit(
            network,
            train_loader,
            val_loader if val_loader is not None else test_loader,
            loss_fn,
            optimizer,
            schedule,
            train=config.train,
            task=task,
            num_categories=len(data.categories),
            plan=plan,
            writer=writer,
            history=history,
        )
        result.epochs, result.best_epoch = fitted.epochs, fitted.best_epoch
        if fitted.status == "diverged":
            result.status = "diverged"
            result.error = f"non-finite loss in epoch {fitted.epochs}"
            return
        if outputs is not None:
            save_checkpoint(_cpu_state(model), outputs.checkpoint_dir / "best.pt")
        image_metrics, result.test_loss = predict_counts_and_loss(
            network, test_loader, task, data.categories, plan, names=data.names, loss_fn=loss_fn
        )
        result.image_metrics = image_metrics
        result.class_metrics = class_metrics(image_metrics, data.categories, task)
        result.status = "ok"
        if writer is not None:
            log_overlays(writer, network, test_loader, task, plan, step=fitted.epochs)
    finally:
        if writer is not None:
            writer.close()
