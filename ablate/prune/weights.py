"""How far training moved each conv layer, and how strongly the loss still pulls on it.

- weight distance: ||W_trained - W_initial||_2 per conv layer (the `weight` tensor), and the
  same relative to ||W_initial||;
- gradient norms: ||dL/dW||_2 per conv layer, averaged over the batches of one epoch of the
  run's training split, with the run's own loss and no optimizer step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from ablate.config import Task
from ablate.prune.scopes import conv_layers, layer_names
from ablate.train.evaluate import class_targets
from ablate.train.restore import clean_state

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _block(readable: str) -> str:
    """The block part of a readable layer name: "decoder-1.block.conv2" -> "decoder-1"."""
    return readable.split(".", 1)[0]


def weight_distance(
    model: nn.Module, initial: Mapping[str, torch.Tensor], trained: Mapping[str, torch.Tensor]
) -> pd.DataFrame:
    """Per conv layer of `model`: norms of the initial and trained weights and their distance.

    Args:
        model: a model of the run's architecture (only its layer names are used).
        initial: state_dict before the first step (initial.pt).
        trained: state_dict of the selected weights (best.pt).

    Returns:
        Rows layer, module, params, initial_norm, trained_norm, distance, relative_distance,
        in the model's layer order.
    """
    initial, trained = clean_state(initial), clean_state(trained)
    readable = layer_names(model)
    rows = []
    for name in conv_layers(model):
        before = initial[f"{name}.weight"].double()
        after = trained[f"{name}.weight"].double()
        distance = float(torch.linalg.vector_norm(after - before))
        initial_norm = float(torch.linalg.vector_norm(before))
        rows.append(
            {
                "layer": readable[name],
                "module": _block(readable[name]),
                "params": before.numel(),
                "initial_norm": initial_norm,
                "trained_norm": float(torch.linalg.vector_norm(after)),
                "distance": distance,
                "relative_distance": distance / initial_norm if initial_norm > 0 else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def grad_norms(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: Loss,
    task: Task,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """Per conv layer: the L2 norm of the loss gradient of its weight, mean over `loader`'s batches.

    The model runs in training mode (as during training: batch statistics, dropout) but no
    optimizer steps, so every batch sees the same weights. The caller passes a copy when
    running statistics of normalization layers must stay untouched.

    Returns:
        Rows layer, module, grad_norm (mean over batches), grad_norm_std, batches.
    """
    layers = conv_layers(model)
    readable = layer_names(model)
    per_batch: list[torch.Tensor] = []
    model.to(device).train()
    for batch in loader:
        images = batch["image"].to(device)
        target = class_targets(batch["mask"].to(device), batch["category"].to(device), task)
        model.zero_grad(set_to_none=True)
        logits = model(images)  # (B, C, h, w)
        if tuple(logits.shape[-2:]) != tuple(target.shape[-2:]):
            logits = F.interpolate(
                logits, size=tuple(target.shape[-2:]), mode="bilinear", align_corners=False
            )
        loss_target = target.unsqueeze(1).float() if task == "binary" else target
        loss_fn(logits, loss_target).backward()
        norms = [
            torch.linalg.vector_norm(layer.weight.grad)
            if layer.weight.grad is not None
            else torch.zeros(())
            for layer in layers.values()
        ]
        per_batch.append(torch.stack(norms).detach().cpu())
    model.zero_grad(set_to_none=True)
    if not per_batch:
        return pd.DataFrame(columns=["layer", "module", "grad_norm", "grad_norm_std", "batches"])
    stacked = torch.stack(per_batch).double()  # (batches, layers)
    std = stacked.std(dim=0) if len(per_batch) > 1 else torch.full((len(layers),), float("nan"))
    return pd.DataFrame(
        {
            "layer": [readable[name] for name in layers],
            "module": [_block(readable[name]) for name in layers],
            "grad_norm": stacked.mean(dim=0).numpy(),
            "grad_norm_std": std.numpy(),
            "batches": len(per_batch),
        }
    )
