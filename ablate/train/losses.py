"""Segmentation losses for binary and multiclass logits, and weighted sums of them.

Shapes (the contract of docs/ARCHITECTURE.md):
    binary:     logits (B, 1, h, w); target float (B, 1, h, w) in {0, 1} ((B, h, w) accepted)
    multiclass: logits (B, C, h, w); target int64 (B, h, w) in [0, C)

Region losses (dice, jaccard, tversky) are "batch soft" losses: probabilities and one-hot
targets are summed over the whole batch and all pixels per class, with smoothing 1.0, then
averaged over classes (binary: the foreground only; multiclass: every class, background
included). All loss math runs in float32, also under bf16 autocast.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ablate.config import Task, TrainConfig
from ablate.errors import UserError
from ablate.registry import Registry

LossFn = Callable[[torch.Tensor, torch.Tensor, Task], torch.Tensor]

LOSS_NAME = re.compile(r"^[a-z_]+$")
"""Loss names appear in weighted sums (`0.7*dice+0.3*mine`): lowercase letters and _."""


def check_loss(name: str, loss: LossFn) -> None:
    """A plug-in loss: a finite float scalar with a gradient, for both tasks."""
    if not LOSS_NAME.match(name):
        raise ValueError("a loss name is lowercase letters and _ only (it is used in sums)")
    generator = torch.Generator().manual_seed(0)
    cases = {
        "binary": (torch.randn(2, 1, 8, 8, generator=generator), torch.ones(2, 1, 8, 8)),
        "multiclass": (
            torch.randn(2, 3, 8, 8, generator=generator),
            torch.randint(0, 3, (2, 8, 8), generator=generator),
        ),
    }
    for task, (logits, target) in cases.items():
        logits.requires_grad_(True)
        value = loss(logits, target, task)  # type: ignore[arg-type]
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"must return a scalar tensor for task {task}, returned {shape}")
        if not torch.isfinite(value) or not value.requires_grad:
            raise ValueError(f"must return a finite value with a gradient for task {task}")


LOSSES: Registry[LossFn] = Registry("loss", check=check_loss)

SMOOTH = 1.0
FOCAL_GAMMA = 2.0
FOCAL_ALPHA = 0.25  # binary only: weight of the foreground term, 1 - alpha for background
TVERSKY_ALPHA = 0.3  # weight of false positives
TVERSKY_BETA = 0.7  # weight of false negatives: missing tissue costs more than extra tissue

_TERM = re.compile(r"^\s*(?:(\d*\.?\d+)\s*\*\s*)?([a-z_]+)\s*$")


def _prepared(
    logits: torch.Tensor, target: torch.Tensor, task: Task
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 probabilities and a same-shaped float32 target (one-hot for multiclass)."""
    logits = logits.float()
    if task == "binary":
        target = _binary_target(logits, target)
        return torch.sigmoid(logits), target
    probs = torch.softmax(logits, dim=1)  # (B, C, h, w)
    one_hot = F.one_hot(target.long(), logits.shape[1]).permute(0, 3, 1, 2).float()
    return probs, one_hot


def _binary_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if target.dim() == logits.dim() - 1:
        target = target.unsqueeze(1)  # (B, h, w) -> (B, 1, h, w)
    if target.shape != logits.shape:
        raise ValueError(
            f"binary target shape {tuple(target.shape)} != logits {tuple(logits.shape)}"
        )
    return target.float()


def _soft_counts(
    logits: torch.Tensor, target: torch.Tensor, task: Task
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft tp, fp, fn per class, each (C,), summed over batch and pixels."""
    probs, truth = _prepared(logits, target, task)
    dims = (0, 2, 3)
    tp = (probs * truth).sum(dims)
    fp = (probs * (1 - truth)).sum(dims)
    fn = ((1 - probs) * truth).sum(dims)
    return tp, fp, fn


def _tversky_loss(
    logits: torch.Tensor, target: torch.Tensor, task: Task, alpha: float, beta: float
) -> torch.Tensor:
    # Jaccard is alpha = beta = 1; Dice has its own smoothing, (2 tp + 1) / (2 tp + fp + fn + 1).
    tp, fp, fn = _soft_counts(logits, target, task)
    index = (tp + SMOOTH) / (tp + alpha * fp + beta * fn + SMOOTH)
    return 1 - index.mean()


@LOSSES.register("dice")
def dice_loss(logits: torch.Tensor, target: torch.Tensor, task: Task) -> torch.Tensor:
    """1 - soft Dice, (2 tp + 1) / (2 tp + fp + fn + 1) over the batch."""
    tp, fp, fn = _soft_counts(logits, target, task)
    dice = (2 * tp + SMOOTH) / (2 * tp + fp + fn + SMOOTH)
    return 1 - dice.mean()


@LOSSES.register("jaccard")
def jaccard_loss(logits: torch.Tensor, target: torch.Tensor, task: Task) -> torch.Tensor:
    """1 - soft IoU, (tp + 1) / (tp + fp + fn + 1) over the batch."""
    return _tversky_loss(logits, target, task, alpha=1.0, beta=1.0)


@LOSSES.register("tversky")
def tversky_loss(logits: torch.Tensor, target: torch.Tensor, task: Task) -> torch.Tensor:
    """1 - Tversky index, (tp + 1) / (tp + 0.3 fp + 0.7 fn + 1) over the batch."""
    return _tversky_loss(logits, target, task, alpha=TVERSKY_ALPHA, beta=TVERSKY_BETA)


@LOSSES.register("bce")
def bce_loss(logits: torch.Tensor, target: torch.Tensor, task: Task) -> torch.Tensor:
    """Pixel-mean binary cross-entropy on logits; cross-entropy for multiclass."""
    logits = logits.float()
    if task == "binary":
        return F.binary_cross_entropy_with_logits(logits, _binary_target(logits, target))
    return F.cross_entropy(logits, target.long())


@LOSSES.register("focal")
def focal_loss(logits: torch.Tensor, target: torch.Tensor, task: Task) -> torch.Tensor:
    """Pixel-mean focal loss, gamma 2; binary weights foreground by alpha 0.25 (RetinaNet),
    multiclass uses the softmax probability of the true class and no alpha."""
    logits = logits.float()
    if task == "binary":
        truth = _binary_target(logits, target)
        ce = F.binary_cross_entropy_with_logits(logits, truth, reduction="none")
        prob = torch.sigmoid(logits)
        p_true = prob * truth + (1 - prob) * (1 - truth)
        alpha = FOCAL_ALPHA * truth + (1 - FOCAL_ALPHA) * (1 - truth)
        return (alpha * (1 - p_true) ** FOCAL_GAMMA * ce).mean()
    log_p = F.log_softmax(logits, dim=1).gather(1, target.long().unsqueeze(1))  # (B, 1, h, w)
    return (-((1 - log_p.exp()) ** FOCAL_GAMMA) * log_p).mean()


@dataclass(frozen=True)
class WeightedLoss:
    """A weighted sum of registered losses, bound to a task; call it like a loss function.

    Attributes:
        terms: (weight, loss name) pairs in the order of the spec.
        task: "binary" or "multiclass".
    """

    terms: tuple[tuple[float, str], ...]
    task: Task

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = logits.new_zeros((), dtype=torch.float32)
        for weight, name in self.terms:
            total = total + weight * LOSSES.get(name)(logits, target, self.task)
        return total


def parse_loss(spec: str) -> tuple[tuple[float, str], ...]:
    """(weight, name) pairs of "dice", "bce+dice" or "0.7*dice+0.3*jaccard" (weights default 1).

    Raises:
        UserError: a malformed spec or an unknown loss name (naming the valid ones).
    """
    terms = []
    for part in spec.split("+"):
        match = _TERM.match(part)
        if match is None:
            raise UserError(
                f"train.loss: {spec!r} is not a loss name or a weighted sum "
                "like 0.7*dice+0.3*jaccard"
            )
        weight, name = match.groups()
        if name not in LOSSES:
            valid = ", ".join(LOSSES.names())
            raise UserError(f"train.loss: unknown loss {name!r}; valid: {valid}")
        terms.append((1.0 if weight is None else float(weight), name))
    return tuple(terms)


def build_loss(spec: str, task: Task) -> WeightedLoss:
    """The loss `train.loss` names, as a callable (logits, target) -> scalar float32 tensor.

    Example:
        >>> loss = build_loss("0.7*dice+0.3*jaccard", "binary")
        >>> loss(torch.zeros(2, 1, 8, 8), torch.ones(2, 1, 8, 8)).shape
        torch.Size([])
    """
    return WeightedLoss(terms=parse_loss(spec), task=task)


def aux_weights(levels: int, weight: float, decay: float) -> list[float]:
    """Loss weights of `levels` auxiliary heads, decoder level 2 first: weight * decay**i.

    Example:
        >>> aux_weights(3, 0.5, 0.5)
        [0.5, 0.25, 0.125]
    """
    return [weight * decay**index for index in range(levels)]


@dataclass(frozen=True)
class DeepSupervisionLoss:
    """Deep supervision's training loss: the weighted mean of one loss over the main logits
    (weight 1) and the auxiliary logits of decoder levels 2..depth (`aux_weights`).

    Dividing by the weights' sum keeps the value on the scale of the main loss, so training
    curves of variants with and without deep supervision stay comparable.

    Attributes:
        loss: the run's loss, (logits, target) -> scalar (from `build_loss`).
        weight: train.aux_weight, the weight of the level-2 head.
        decay: train.aux_decay, the factor from one level to the next deeper one.
    """

    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    weight: float
    decay: float

    def __call__(
        self, logits: torch.Tensor, aux: Sequence[torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor:
        """logits and each aux tensor (B, C, h, w) against one target -> float32 scalar."""
        weights = [1.0, *aux_weights(len(aux), self.weight, self.decay)]
        total = logits.new_zeros((), dtype=torch.float32)
        for weight, head in zip(weights, [logits, *aux], strict=True):
            total = total + weight * self.loss(head, target)
        return total / sum(weights)


def deep_supervision_loss(
    model: nn.Module,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    train: TrainConfig,
) -> DeepSupervisionLoss | None:
    """The training loss over main and auxiliary heads when `model` has auxiliary heads
    (`model.deep_supervision`, see ablate.models.EncoderDecoder); None when it trains on
    `model(x)` alone. Validation, evaluation and prediction always use `model(x)`.

    Example:
        >>> deep = deep_supervision_loss(model, build_loss("dice", "binary"), config.train)
        >>> loss = deep(*model.forward_with_aux(images), target) if deep else ...
    """
    if not getattr(model, "deep_supervision", False):
        return None
    return DeepSupervisionLoss(loss, train.aux_weight, train.aux_decay)
