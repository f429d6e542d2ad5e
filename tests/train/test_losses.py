"""Losses on inputs whose values are computed by hand, for binary and multiclass logits."""

from __future__ import annotations

import math

import pytest
import torch

from ablate.config import LOSS_TERMS
from ablate.errors import UserError
from ablate.train.losses import LOSSES, build_loss, parse_loss


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


# Binary case, one 2x2 image: probabilities [[.8, .2], [.6, .1]], target [[1, 0], [1, 0]].
# Soft counts: tp = .8 + .6 = 1.4, fp = .2 + .1 = .3, fn = .2 + .4 = .6.
BINARY_PROBS = [[0.8, 0.2], [0.6, 0.1]]
BINARY_TARGET = [[1.0, 0.0], [1.0, 0.0]]
TP, FP, FN = 1.4, 0.3, 0.6
BINARY_EXPECTED = {
    "dice": 1 - (2 * TP + 1) / (2 * TP + FP + FN + 1),  # 0.191489
    "jaccard": 1 - (TP + 1) / (TP + FP + FN + 1),  # 0.272727
    "tversky": 1 - (TP + 1) / (TP + 0.3 * FP + 0.7 * FN + 1),  # 0.175258
    # -mean(log p_true) with p_true = .8, .8, .6, .9
    "bce": -(2 * math.log(0.8) + math.log(0.6) + math.log(0.9)) / 4,
    # mean(alpha_t (1 - p_true)^2 (-log p_true)), alpha_t = .25 foreground, .75 background
    "focal": -(
        0.25 * 0.2**2 * math.log(0.8)
        + 0.75 * 0.2**2 * math.log(0.8)
        + 0.25 * 0.4**2 * math.log(0.6)
        + 0.75 * 0.1**2 * math.log(0.9)
    )
    / 4,
}

# Multiclass case, one 1x2 image, 3 classes: pixel a probs (.7, .2, .1) class 0,
# pixel b probs (.1, .3, .6) class 2. Per class (tp, fp, fn): (.7, .1, .3), (0, .5, 0),
# (.6, .1, .4).
MULTI_PROBS = [[0.7, 0.1], [0.2, 0.3], [0.1, 0.6]]  # (C, w) with h = 1
MULTI_TARGET = [[0, 2]]
MULTI_COUNTS = [(0.7, 0.1, 0.3), (0.0, 0.5, 0.0), (0.6, 0.1, 0.4)]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


MULTI_EXPECTED = {
    "dice": 1 - _mean([(2 * t + 1) / (2 * t + p + n + 1) for t, p, n in MULTI_COUNTS]),
    "jaccard": 1 - _mean([(t + 1) / (t + p + n + 1) for t, p, n in MULTI_COUNTS]),
    "tversky": 1 - _mean([(t + 1) / (t + 0.3 * p + 0.7 * n + 1) for t, p, n in MULTI_COUNTS]),
    "bce": -(math.log(0.7) + math.log(0.6)) / 2,
    "focal": -(0.3**2 * math.log(0.7) + 0.4**2 * math.log(0.6)) / 2,
}


def _binary_case() -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.tensor([[[[_logit(p) for p in row] for row in BINARY_PROBS]]])
    return logits, torch.tensor([[BINARY_TARGET]])  # (1, 1, 2, 2) each


def _multi_case() -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.tensor([[[row] for row in MULTI_PROBS]]).log()  # (1, 3, 1, 2)
    return logits, torch.tensor([MULTI_TARGET])  # (1, 1, 2)


def test_registry_ships_the_config_terms() -> None:
    assert LOSSES.names() == ["dice", "jaccard", "tversky", "bce", "focal"]
    assert sorted(LOSSES.names()) == sorted(LOSS_TERMS)


@pytest.mark.parametrize("name", LOSSES.names())
def test_binary_known_values(name: str) -> None:
    logits, target = _binary_case()
    value = build_loss(name, "binary")(logits, target)
    assert value.dtype == torch.float32 and value.shape == ()
    assert value.item() == pytest.approx(BINARY_EXPECTED[name], rel=1e-5)


@pytest.mark.parametrize("name", LOSSES.names())
def test_multiclass_known_values(name: str) -> None:
    logits, target = _multi_case()
    assert build_loss(name, "multiclass")(logits, target).item() == pytest.approx(
        MULTI_EXPECTED[name], rel=1e-5
    )


def test_hand_values_are_the_ones_documented() -> None:
    # Guards the expected table itself against a typo that would make a wrong loss agree.
    assert BINARY_EXPECTED["dice"] == pytest.approx(0.191489, abs=1e-6)
    assert BINARY_EXPECTED["jaccard"] == pytest.approx(0.272727, abs=1e-6)
    assert BINARY_EXPECTED["tversky"] == pytest.approx(0.175258, abs=1e-6)
    assert MULTI_EXPECTED["dice"] == pytest.approx(0.220459, abs=1e-6)


@pytest.mark.parametrize("name", ["dice", "jaccard", "tversky"])
@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_perfect_prediction_is_near_zero(name: str, task: str) -> None:
    torch.manual_seed(0)
    if task == "binary":
        target = (torch.rand(2, 1, 8, 8) > 0.5).float()
        logits = (target * 2 - 1) * 30
    else:
        target = torch.randint(0, 4, (2, 8, 8))
        logits = torch.nn.functional.one_hot(target, 4).permute(0, 3, 1, 2).float() * 60
    assert build_loss(name, task)(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    assert build_loss(name, task)(-logits, target).item() > 0.9


def test_dice_is_over_the_batch_not_per_image() -> None:
    # Image 1 is all background, predicted background: per-image dice would be 1 (smoothed);
    # over the batch it only adds nothing to tp, fp or fn.
    logits = torch.full((2, 1, 2, 2), -40.0)
    target = torch.zeros(2, 1, 2, 2)
    logits[1, 0, 0, 0] = 40.0
    target[1, 0, 0, 0] = 1.0
    target[1, 0, 0, 1] = 1.0  # tp = 1, fn = 1 over the batch
    loss = build_loss("dice", "binary")(logits, target).item()
    assert loss == pytest.approx(1 - (2 + 1) / (2 + 0 + 1 + 1), abs=1e-6)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_weighted_sum_equals_sum_of_parts(task: str) -> None:
    logits, target = _binary_case() if task == "binary" else _multi_case()
    parts = {name: build_loss(name, task)(logits, target).item() for name in LOSSES.names()}
    combined = build_loss("0.7*dice+0.3*jaccard", task)(logits, target).item()
    assert combined == pytest.approx(0.7 * parts["dice"] + 0.3 * parts["jaccard"], rel=1e-6)
    unweighted = build_loss("bce + dice", task)(logits, target).item()
    assert unweighted == pytest.approx(parts["bce"] + parts["dice"], rel=1e-6)


def test_parse_loss_terms() -> None:
    assert parse_loss("dice") == ((1.0, "dice"),)
    assert parse_loss("0.7*dice+0.3*jaccard") == ((0.7, "dice"), (0.3, "jaccard"))
    assert parse_loss(" bce + .5 * focal ") == ((1.0, "bce"), (0.5, "focal"))


def test_unknown_loss_lists_valid_names() -> None:
    expected = r"train\.loss: unknown loss 'lovasz'; valid: dice, jaccard, tversky, bce, focal"
    with pytest.raises(UserError, match=expected):
        build_loss("0.5*dice+0.5*lovasz", "binary")


@pytest.mark.parametrize("spec", ["", "dice+", "2**dice", "dice*0.5"])
def test_malformed_spec_is_a_user_error(spec: str) -> None:
    with pytest.raises(UserError, match=r"train\.loss"):
        build_loss(spec, "binary")


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_every_loss_backpropagates_in_float32(name: str, task: str) -> None:
    torch.manual_seed(0)
    channels = 1 if task == "binary" else 3
    logits = torch.randn(2, channels, 8, 8, dtype=torch.bfloat16, requires_grad=True)
    if task == "binary":
        target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    else:
        target = torch.randint(0, 3, (2, 8, 8))
    value = build_loss(name, task)(logits, target)
    assert value.dtype == torch.float32
    value.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad.float()).all()
    assert logits.grad.abs().sum() > 0


def test_binary_accepts_mask_without_channel_and_rejects_wrong_shape() -> None:
    logits, target = _binary_case()
    loss = build_loss("dice+bce", "binary")
    assert loss(logits, target[:, 0].long()).item() == pytest.approx(loss(logits, target).item())
    with pytest.raises(ValueError, match="binary target shape"):
        loss(logits, torch.zeros(1, 1, 4, 4))
