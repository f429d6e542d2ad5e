"""Evaluation at the native mask resolution: confusion counts per image, validation and test loss.

The network sees images at the training resolution; its logits are upsampled bilinearly to
the native mask size before thresholding, so metrics never depend on the training size.
Counts stay on the device while batches stream and reach the host once, at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from ablate.config import Precision, Task
from ablate.train.device import DevicePlan, autocast_dtype, resolve_device
from ablate.train.metrics import BINARY_CLASS, IMAGE_COLUMNS, confusion_counts, empty_image_metrics

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def native_logits(
    model: nn.Module, images: torch.Tensor, size: Sequence[int], plan: DevicePlan
) -> torch.Tensor:
    """fp32 logits (B, C, H, W) at the native mask size `size` = (H, W)."""
    with plan.autocast():
        logits = model(images)  # (B, C, h, w) at the training resolution
    logits = logits.float()
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
    return logits


def class_targets(mask: torch.Tensor, category: torch.Tensor, task: Task) -> torch.Tensor:
    """Per-pixel labels: the 0/1 mask (binary) or 0 = background, 1 + category (multiclass)."""
    if task == "binary":
        return mask
    return mask * (category.view(-1, 1, 1) + 1)  # (B, H, W)


def batch_counts(logits: torch.Tensor, target: torch.Tensor, task: Task) -> torch.Tensor:
    """Confusion counts (B, K, 4) of each image and foreground class, one-vs-rest.

    Binary: K = 1, foreground where logit > 0 (sigmoid > 0.5). Multiclass: K = C - 1 classes
    (background excluded), each pixel assigned its argmax class.
    """
    if task == "binary":
        return confusion_counts(logits[:, 0] > 0, target.bool()).unsqueeze(1)  # (B, 1, 4)
    batch, channels = logits.shape[:2]
    classes = torch.arange(1, channels, device=logits.device).view(1, -1, 1, 1)
    pred = logits.argmax(dim=1, keepdim=True) == classes  # (B, K, H, W)
    true = target.unsqueeze(1) == classes  # (B, K, H, W)
    counts = confusion_counts(pred.flatten(0, 1), true.flatten(0, 1))  # (B*K, 4)
    return counts.view(batch, channels - 1, 4)


def _batches(loader: DataLoader, plan: DevicePlan) -> Iterator[dict[str, torch.Tensor]]:
    """Batches moved to the plan's device (index stays on the host for naming rows)."""
    for batch in loader:
        yield {
            "image": plan.to_device(batch["image"], image=True),
            "mask": plan.to_device(batch["mask"]),
            "category": plan.to_device(batch["category"]),
            "index": batch["index"],
        }


class _eval_mode:
    """Switch a model to eval mode for a block and restore its previous mode after."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> None:
        self.was_training = self.model.training
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def predict_counts(
    model: nn.Module,
    loader: DataLoader,
    task: Task,
    categories: Sequence[str],
    device: str | torch.device | DevicePlan | None = None,
    precision: Precision | torch.dtype | None = "auto",
    *,
    names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """image_metrics rows of `model` on `loader`, counted at the native mask resolution.

    Args:
        model: the network (already on `device`).
        loader: an evaluation loader (batches with image, mask at native size, category, index).
        task: binary (one "foreground" row per image) or multiclass (one row per image and
            class, class_name = the category name).
        categories: the dataset's category names (data.categories).
        device: device or DevicePlan; None picks CUDA when available, else CPU.
        precision: auto, fp32, bf16 or an autocast dtype (ignored when device is a plan).
        names: image ids (data.names) indexed by the batch's `index`; without them the
            image column holds the index as text.

    Returns:
        A DataFrame with columns image, category, class_name, tp, fp, fn, tn.

    Example:
        >>> rows = predict_counts(model, test_loader, "binary", data.categories, "cpu",
        ...                       names=data.names)
    """
    rows, _ = predict_counts_and_loss(
        model, loader, task, categories, device, precision, names=names
    )
    return rows


def predict_counts_and_loss(
    model: nn.Module,
    loader: DataLoader,
    task: Task,
    categories: Sequence[str],
    device: str | torch.device | DevicePlan | None = None,
    precision: Precision | torch.dtype | None = "auto",
    *,
    names: Sequence[str] | None = None,
    loss_fn: Loss | None = None,
) -> tuple[pd.DataFrame, float | None]:
    """predict_counts' rows and, with `loss_fn`, the mean loss per image in the same pass.

    The loss is taken on the native-size logits, as `evaluate_loss` does; None without
    `loss_fn` or images.
    """
    plan = _as_plan(device, precision)
    per_batch: list[torch.Tensor] = []
    indices: list[torch.Tensor] = []
    categories_seen: list[torch.Tensor] = []
    total_loss = torch.zeros((), device=plan.device)
    with _eval_mode(model), torch.inference_mode():
        for batch in _batches(loader, plan):
            logits = native_logits(model, batch["image"], batch["mask"].shape[-2:], plan)
            target = class_targets(batch["mask"], batch["category"], task)
            per_batch.append(batch_counts(logits, target, task))
            indices.append(batch["index"])
            categories_seen.append(batch["category"])
            if loss_fn is not None:
                size = batch["image"].shape[0]
                total_loss += loss_fn(logits, _loss_target(target, task)).float() * size
    if not per_batch:
        return empty_image_metrics(), None
    counts = torch.cat(per_batch).cpu().numpy()  # the one host transfer: (N, K, 4)
    index = torch.cat(indices).cpu().numpy()
    category = torch.cat(categories_seen).cpu().numpy()
    loss = float(total_loss) / len(index) if loss_fn is not None else None
    return _rows(counts, index, category, task, categories, names), loss


def _loss_target(target: torch.Tensor, task: Task) -> torch.Tensor:
    """What the losses take: a float (B, 1, H, W) mask (binary) or (B, H, W) labels."""
    return target.unsqueeze(1).float() if task == "binary" else target


def _rows(
    counts: np.ndarray,
    index: np.ndarray,
    category: np.ndarray,
    task: Task,
    categories: Sequence[str],
    names: Sequence[str] | None,
) -> pd.DataFrame:
    """Flatten (N, K, 4) counts into one row per image and class."""
    images, classes = counts.shape[:2]
    class_names = [BINARY_CLASS] if task == "binary" else list(categories)[:classes]
    image_ids = [names[i] for i in index] if names is not None else [str(i) for i in index]
    frame = pd.DataFrame(
        {
            "image": [image_ids[n] for n in range(images) for _ in range(classes)],
            "category": [categories[category[n]] for n in range(images) for _ in range(classes)],
            "class_name": class_names * images,
        }
    )
    flat = counts.reshape(images * classes, 4)
    for column, values in zip(("tp", "fp", "fn", "tn"), flat.T, strict=True):
        frame[column] = values.astype("int64")
    return frame[IMAGE_COLUMNS]


VAL_SCORES = ("dice", "iou", "precision", "recall")
"""The macro scores `evaluate_loss` returns, in this order."""


def evaluate_loss(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: Loss,
    task: Task,
    num_categories: int,
    plan: DevicePlan,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss (0-d) and macro scores (VAL_SCORES, shape (4,)) of `model` on `loader`.

    The loss is taken on logits upsampled to the native mask size (what the metrics see).
    Each score is the mean over categories (binary) or classes (multiclass) present in the
    loader, each from counts summed over its images, with the conventions of
    `ablate.train.metrics`. Nothing syncs with the host: the tensors stay on the device, so
    the caller decides when to read the numbers.
    """
    total_loss = torch.zeros((), device=plan.device)
    seen = torch.zeros((), device=plan.device)
    groups = num_categories
    sums = torch.zeros(groups, 4, dtype=torch.int64, device=plan.device)  # per category or class
    present = torch.zeros(groups, dtype=torch.bool, device=plan.device)
    with _eval_mode(model), torch.inference_mode():
        for batch in _batches(loader, plan):
            logits = native_logits(model, batch["image"], batch["mask"].shape[-2:], plan)
            target = class_targets(batch["mask"], batch["category"], task)
            size = batch["image"].shape[0]
            total_loss += loss_fn(logits, _loss_target(target, task)).float() * size
            seen += size
            counts = batch_counts(logits, target, task)  # (B, K, 4)
            if task == "binary":
                sums.index_add_(0, batch["category"], counts[:, 0])
                present[batch["category"]] = True
            else:
                sums += counts.sum(dim=0)
                present[batch["category"]] = True
    scores = _scores(sums.double())  # (groups, 4)
    macro = (scores * present.unsqueeze(1)).sum(dim=0) / present.sum().clamp(min=1)
    return total_loss / seen.clamp(min=1), macro.float()


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor, empty: torch.Tensor | float):
    """numerator / denominator, `empty` where the denominator is 0."""
    empty = torch.as_tensor(empty, dtype=numerator.dtype, device=numerator.device)
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1), empty)


def _scores(counts: torch.Tensor) -> torch.Tensor:
    """(G, 4) tp, fp, fn, tn -> (G, 4) Dice, IoU, precision, recall (metrics.py's rules)."""
    tp, fp, fn = counts[:, 0], counts[:, 1], counts[:, 2]
    errors = fp + fn
    one, zero = torch.ones_like(tp), torch.zeros_like(tp)
    return torch.stack(
        [
            _ratio(2 * tp, 2 * tp + errors, one),
            _ratio(tp, tp + errors, one),
            _ratio(tp, tp + fp, torch.where(fn == 0, one, zero)),
            _ratio(tp, tp + fn, torch.where(fp == 0, one, zero)),
        ],
        dim=1,
    )


def _as_plan(
    device: str | torch.device | DevicePlan | None, precision: Precision | torch.dtype | None
) -> DevicePlan:
    """A DevicePlan for evaluation from a device (or plan) and a precision."""
    if isinstance(device, DevicePlan):
        return device
    resolved = resolve_device(device)
    cuda = resolved.type == "cuda"
    return DevicePlan(
        device=resolved,
        autocast_dtype=autocast_dtype(precision, resolved),
        channels_last=cuda,
        pin_memory=cuda,
        non_blocking=cuda,
    )
