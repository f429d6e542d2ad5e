"""Weight distance and gradient norms per conv layer."""

from __future__ import annotations

import pytest
import torch

from ablate.config import ModelConfig
from ablate.models import build_model
from ablate.prune.weights import grad_norms, weight_distance
from ablate.train.losses import build_loss
from ablate.train.restore import clean_state


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(widths=[4, 8, 16], norm="batch"), out_channels=1)


def test_distance_zero_for_identical_weights() -> None:
    model = _model()
    state = model.state_dict()
    table = weight_distance(model, state, state)
    assert len(table) == 13
    assert (table["distance"] == 0).all() and (table["relative_distance"] == 0).all()
    assert (table["initial_norm"] > 0).all()


def test_distance_positive_after_training_steps() -> None:
    model = _model()
    initial = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = build_loss("dice", "binary")
    images = torch.rand(4, 3, 32, 32)
    target = (images.mean(dim=1, keepdim=True) > 0.5).float()
    for _ in range(3):
        optimizer.zero_grad()
        loss_fn(model(images), target).backward()
        optimizer.step()
    table = weight_distance(model, initial, model.state_dict())
    assert (table["distance"] > 0).all()
    expected = torch.linalg.vector_norm(
        model.state_dict()["encoder.0.conv1.weight"].double()
        - initial["encoder.0.conv1.weight"].double()
    )
    row = table[table["layer"] == "encoder-1.conv1"].iloc[0]
    assert row["distance"] == pytest.approx(float(expected))
    assert row["relative_distance"] == pytest.approx(row["distance"] / row["initial_norm"])
    assert row["module"] == "encoder-1"


def test_clean_state_strips_compile_prefix() -> None:
    assert list(clean_state({"_orig_mod.head.weight": torch.zeros(1)})) == ["head.weight"]


def test_grad_norms_average_over_batches() -> None:
    model = _model()
    generator = torch.Generator().manual_seed(0)
    batches = [
        {
            "image": torch.rand(2, 3, 32, 32, generator=generator),
            "mask": (torch.rand(2, 32, 32, generator=generator) > 0.5).long(),
            "category": torch.tensor([0, 1]),
        }
        for _ in range(3)
    ]
    table = grad_norms(model, batches, build_loss("bce", "binary"), "binary")
    assert len(table) == 13 and (table["batches"] == 3).all()
    assert (table["grad_norm"] > 0).all()
    # the mean over batches equals the per-batch norms averaged by hand
    loss_fn = build_loss("bce", "binary")
    norms = []
    for batch in batches:
        model.zero_grad()
        loss_fn(model(batch["image"]), batch["mask"].unsqueeze(1).float()).backward()
        norms.append(float(torch.linalg.vector_norm(model.head.weight.grad)))
    head = table[table["layer"] == "head"].iloc[0]
    assert head["grad_norm"] == pytest.approx(sum(norms) / len(norms), rel=1e-5)
