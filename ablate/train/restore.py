"""A trained run brought back: its stored weights in the model its config describes.

The one way every later analysis (sample predictions, pruning) restores a run, so the
checks on a checkpoint from a copied or crafted study live in one place.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import torch
from torch import nn

from ablate.config import RunConfig
from ablate.data.inputs import input_channels
from ablate.errors import UserError
from ablate.models import build_model, output_channels
from ablate.store import StudyDir
from ablate.store.study import CHECKPOINTS

COMPILED_PREFIX = "_orig_mod."
"""torch.compile wraps the module; a compiled model's state_dict keys carry this prefix."""
INITIAL = "initial.pt"
BEST = "best.pt"


def clean_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state_dict without torch.compile's `_orig_mod.` prefix, so it loads into a plain model."""
    return {key.removeprefix(COMPILED_PREFIX): value for key, value in state.items()}


def read_state(
    study: StudyDir, variant: str, seed: int, name: str
) -> dict[str, torch.Tensor] | None:
    """A run's checkpoint (`initial.pt` or `best.pt`) as a state_dict; None when not saved.

    Loaded with `weights_only=True`: a checkpoint is tensors, never code to run.

    Raises:
        UserError: the file is not a state_dict of tensors (named).
    """
    data = study.checkpoint_bytes(variant, seed, name)
    if data is None:
        return None
    where = study.path(*study.run_folder(CHECKPOINTS, variant, seed), name)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises pickle, zip and runtime errors alike
        kind = type(error).__name__
        raise UserError(f"{where}: not a checkpoint ablate saved ({kind})") from None
    if not isinstance(state, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise UserError(f"{where}: not a checkpoint ablate saved (no state_dict of tensors)")
    return clean_state(state)


def build_run_model(config: RunConfig, categories: list[str]) -> nn.Module:
    """The untrained model of a run's config: its input channels (`augment.input`) and its
    output channels for `categories`."""
    out_channels = output_channels(config.protocol.task, categories)
    return build_model(config.model, out_channels, input_channels(config.augment.input))


def restore_model(
    study: StudyDir,
    config: RunConfig,
    variant: str,
    seed: int,
    categories: list[str],
    name: str = BEST,
) -> nn.Module:
    """A run's model with the weights of its checkpoint `name` (best.pt: the kept weights).

    Raises:
        FileNotFoundError: the run saved no such checkpoint.
        UserError: the checkpoint is damaged or does not fit the run's model.
    """
    state = read_state(study, variant, seed, name)
    if state is None:
        raise FileNotFoundError(f"{variant} seed {seed} has no {name}")
    model = build_run_model(config, categories)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        where = study.path(*study.run_folder(CHECKPOINTS, variant, seed), name)
        first = str(error).strip().splitlines()[0]
        raise UserError(f"{where}: does not fit the run's model ({first})") from None
    return model
