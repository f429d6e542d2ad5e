"""Deep supervision in training: the weighted loss, the loop asking for auxiliary logits, and
every other path (validation, test, prediction) seeing the main head only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ablate.config import TrainConfig
from ablate.data.ebhi import SegmentationData
from ablate.data.loader import build_eval_loader, build_train_loader
from ablate.models import build_model
from ablate.train.device import plan_device
from ablate.train.loop import fit
from ablate.train.losses import DeepSupervisionLoss, aux_weights, build_loss
from ablate.train.optim import build_optimizer, build_schedule
from ablate.train.run import execute_run, run_split

from .conftest import tiny_config


def test_aux_weights_decay_per_level() -> None:
    assert aux_weights(3, 0.5, 0.5) == [0.5, 0.25, 0.125]
    assert aux_weights(2, 0.4, 1.0) == [0.4, 0.4]
    assert aux_weights(0, 0.5, 0.5) == []
    defaults = TrainConfig()
    assert (defaults.aux_weight, defaults.aux_decay) == (0.5, 0.5)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_deep_supervision_loss_is_the_weighted_mean_of_the_heads(task: str) -> None:
    torch.manual_seed(0)
    channels = 1 if task == "binary" else 4
    heads = [torch.randn(2, channels, 8, 8) for _ in range(3)]
    if task == "binary":
        target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    else:
        target = torch.randint(0, channels, (2, 8, 8))
    loss = build_loss("dice+bce", task)
    deep = DeepSupervisionLoss(loss, weight=0.5, decay=0.5)
    parts = [loss(head, target).item() for head in heads]
    expected = (parts[0] + 0.5 * parts[1] + 0.25 * parts[2]) / 1.75
    value = deep(heads[0], heads[1:], target)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(expected, rel=1e-6)
    # Without auxiliary logits it is the plain loss.
    assert deep(heads[0], [], target).item() == pytest.approx(parts[0], rel=1e-6)


def _fit(root: Path, data: SegmentationData, model_fields: dict, **train: object):
    config = tiny_config(root, model=model_fields, train={"epochs": 1, **train})
    split = run_split(config, data, seed=0)
    torch.manual_seed(0)
    model = build_model(config.model, out_channels=1)
    initial = {name: t.clone() for name, t in model.state_dict().items()}
    optimizer = build_optimizer(model.parameters(), config.train)
    calls = {"forward_with_aux": 0}
    original = model.forward_with_aux

    def counted(x: torch.Tensor):
        calls["forward_with_aux"] += 1
        return original(x)

    model.forward_with_aux = counted  # a spy on the real method; the model is real
    train_loader = build_train_loader(
        data, split.train, config.augment, config.train, 0, 0, False, None
    )
    result = fit(
        model,
        train_loader,
        build_eval_loader(data, split.val, config.train, 0, False, None),
        build_loss(config.train.loss, "binary"),
        optimizer,
        build_schedule(optimizer, config.train),
        train=config.train,
        task="binary",
        num_categories=len(data.categories),
        plan=plan_device(config.train, "cpu"),
        history=[],
    )
    # One call per training batch of the one epoch; validation never asks for aux logits.
    assert calls["forward_with_aux"] in (0, len(train_loader))
    return model, initial, calls["forward_with_aux"] > 0, result


@pytest.mark.parametrize("arch", ["unet", "segnet"])
def test_the_loop_trains_the_aux_heads_only_with_deep_supervision(
    synthetic_root: Path, synthetic_data: SegmentationData, arch: str
) -> None:
    fields = {"arch": arch, "deep_supervision": True}
    model, initial, asked_for_aux, result = _fit(synthetic_root, synthetic_data, fields)
    assert result.status == "ok" and asked_for_aux
    aux = {name: t for name, t in model.state_dict().items() if name.startswith("aux_heads")}
    assert aux and all(not torch.equal(t, initial[name]) for name, t in aux.items())

    plain, _, plain_asked, plain_result = _fit(synthetic_root, synthetic_data, {"arch": arch})
    assert plain_result.status == "ok" and not plain_asked
    assert not any(name.startswith("aux_heads") for name in plain.state_dict())


def test_aux_weight_changes_the_training(
    synthetic_root: Path, synthetic_data: SegmentationData
) -> None:
    fields = {"deep_supervision": True}
    light = _fit(synthetic_root, synthetic_data, fields, aux_weight=0.1)[3].history[0]
    heavy = _fit(synthetic_root, synthetic_data, fields, aux_weight=2.0)[3].history[0]
    assert light["train_loss"] != heavy["train_loss"]
    assert light["val_loss"] != heavy["val_loss"]


def test_a_run_with_every_new_part_trains_and_evaluates_the_main_head(
    synthetic_root: Path, synthetic_data: SegmentationData, tmp_path: Path
) -> None:
    config = tiny_config(
        synthetic_root,
        model={
            "block": "residual",
            "se": True,
            "attention": True,
            "bottleneck": "aspp",
            "deep_supervision": True,
        },
        train={"epochs": 3},
    )
    result = execute_run(config, synthetic_data, seed=0)
    assert result.status == "ok", result.error
    assert len(result.history) == 3
    assert result.class_metrics["dice"].between(0, 1).all()
    assert result.test_loss is not None and result.test_loss > 0
