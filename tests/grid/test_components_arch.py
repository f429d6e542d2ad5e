"""The architecture components in grids: removals that change the built model, swaps, and the
refusals (SegNet has no skips) with their YAML key and line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from ablate.cli import main
from ablate.config import Recipe
from ablate.errors import GridError
from ablate.grid import expand_variants, load_grid
from ablate.grid.components import REMOVABLE, ComponentError, removal_changes, removals_for
from ablate.models import build_model

WriteGrid = Callable[..., Path]

RICH_MODEL: dict[str, Any] = {
    "widths": [4, 8, 16, 32],
    "block": "residual",
    "se": True,
    "bottleneck": "aspp",
    "deep_supervision": True,
    "dropout": 0.2,
    "norm": "group-double",
    "init": "xavier",
}
ARCH_RECIPES = {
    "unet": Recipe.model_validate({"model": {**RICH_MODEL, "attention": True}}),
    "segnet": Recipe.model_validate({"model": {**RICH_MODEL, "arch": "segnet"}}),
}
SEGNET_REFUSED = {"skips", "skip-1", "skip-2", "skip-3", "attention"}


def _fingerprint(recipe: Recipe) -> tuple[str, list[tuple[str, tuple[int, ...]]], torch.Tensor]:
    """(module tree, parameter names and shapes, logits of a fixed input) of the model
    `recipe` builds: a removal must change at least one of them."""
    torch.manual_seed(0)
    model = build_model(recipe.model, out_channels=1).eval()
    shapes = [(name, tuple(t.shape)) for name, t in model.state_dict().items()]
    with torch.no_grad():
        logits = model(torch.ones(1, 3, 32, 32))
    return repr(model), shapes, logits


def _apply(recipe: Recipe, changes: dict[str, Any]) -> Recipe:
    """`recipe` with model.* changes applied, validated."""
    assert all(key.startswith("model.") for key in changes), changes
    model = {**recipe.model.model_dump(), **{k.split(".", 1)[1]: v for k, v in changes.items()}}
    return Recipe.model_validate({**recipe.model_dump(), "model": model})


def _model_removals(recipe: Recipe) -> list[str]:
    """Removals that change model.* keys of `recipe` (the others change training only)."""
    names = []
    for removal in removals_for(recipe):
        try:
            changes = removal.changes(recipe)
        except ComponentError:
            continue
        if any(key.startswith("model.") for key in changes):
            names.append(removal.name)
    return names


def test_the_new_components_are_registered_with_their_meaning() -> None:
    for name in ("attention", "se", "deep-supervision", "residual", "aspp"):
        assert REMOVABLE.get(name).meaning


@pytest.mark.parametrize("arch", sorted(ARCH_RECIPES))
def test_every_model_removal_changes_the_built_model(arch: str) -> None:
    baseline = ARCH_RECIPES[arch]
    names = _model_removals(baseline)
    expected = {"norm", "dropout", "init", "deepest-level", "se", "deep-supervision"}
    expected |= {"residual", "aspp"}
    if arch == "unet":
        expected |= SEGNET_REFUSED
    assert set(names) == expected
    tree, shapes, logits = _fingerprint(baseline)
    for name in names:
        variant = _apply(baseline, removal_changes(name, baseline))
        other_tree, other_shapes, other_logits = _fingerprint(variant)
        changed = (other_tree, other_shapes) != (tree, shapes)
        changed = changed or not torch.equal(other_logits, logits)
        assert changed, f"removing {name!r} from the {arch} baseline leaves the model as it was"


def test_removing_deep_supervision_drops_exactly_the_aux_heads() -> None:
    baseline = ARCH_RECIPES["unet"]
    variant = _apply(baseline, removal_changes("deep-supervision", baseline))
    before = {name for name, _ in _fingerprint(baseline)[1]}
    after = {name for name, _ in _fingerprint(variant)[1]}
    assert before - after == {
        f"aux_heads.heads.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")
    }
    assert after <= before


@pytest.mark.parametrize("name", sorted(SEGNET_REFUSED))
def test_skip_removals_are_refused_for_segnet_with_the_reason(name: str) -> None:
    with pytest.raises(ComponentError, match="arch segnet has no skip connections"):
        removal_changes(name, ARCH_RECIPES["segnet"])


def test_removing_skips_takes_the_attention_gates_along() -> None:
    baseline = Recipe.model_validate({"model": {"widths": [4, 8, 16], "attention": True}})
    assert removal_changes("skips", baseline) == {
        "model.skips": False,
        "model.attention": False,
    }
    assert removal_changes("skip-1", baseline) == {"model.disabled_skips": [1]}
    one_left = Recipe.model_validate(
        {"model": {"widths": [4, 8, 16], "attention": True, "disabled_skips": [2]}}
    )
    assert removal_changes("skip-1", one_left) == {
        "model.disabled_skips": [1, 2],
        "model.attention": False,
    }
    assert removal_changes("deepest-level", one_left) == {
        "model.widths": [4, 8],
        "model.disabled_skips": [],
    }


def test_deepest_level_refused_when_deep_supervision_would_lose_its_levels() -> None:
    shallow = Recipe.model_validate({"model": {"widths": [4, 8, 16], "deep_supervision": True}})
    with pytest.raises(ComponentError, match="deep supervision needs depth >= 2"):
        removal_changes("deepest-level", shallow)


GRID = """\
study: arch
data:
  synthetic: {per_class: 4, size: 32}
baseline:
  model:
    arch: segnet
    widths: [8, 16, 32]
  train:
    epochs: 1
ablations:
  remove: [norm, skip-2, attention]
  swap:
    upsampling: [bilinear]
    arch: [unet]
"""


def test_grid_check_refuses_what_segnet_cannot_have(
    write_grid: WriteGrid, line_of: Callable[[str, str], int]
) -> None:
    with pytest.raises(GridError) as raised:
        load_grid(write_grid(GRID))
    problems = raised.value.problems
    line = line_of(GRID, "remove:")
    assert problems[0].startswith(f"ablations.remove[1] (line {line}): cannot remove 'skip-2'")
    assert "arch segnet has no skip connections" in problems[0]
    assert problems[1].startswith(f"ablations.remove[2] (line {line}): cannot remove 'attention'")
    upsampling = line_of(GRID, "upsampling:")
    assert problems[2].startswith(f"ablations.swap.upsampling[0] (line {upsampling}): model:")
    assert "upsamples with the encoder's pooling indices" in problems[2]
    assert len(problems) == 3  # norm and arch=unet are fine


def test_cli_grid_check_names_the_key_and_exits_2(
    write_grid: WriteGrid, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["grid", "check", str(write_grid(GRID))]) == 2
    err = capsys.readouterr().err
    assert "ablations.remove[1] (line 11)" in err and "Traceback" not in err


UNET_GRID = """\
study: unet-parts
data:
  synthetic: {per_class: 4, size: 32}
baseline:
  model:
    widths: [8, 16, 32]
    attention: true
    deep_supervision: true
  train:
    epochs: 1
ablations:
  remove: [attention, deep-supervision, skips]
  swap:
    arch: [segnet]
    block: [residual]
    bottleneck: [aspp]
    se: [true]
    aux_weight: [0.3]
  variants:
    segnet: {arch: segnet, attention: false}
"""


def test_unet_grid_refuses_segnet_with_attention_but_takes_a_named_variant(
    write_grid: WriteGrid, line_of: Callable[[str, str], int]
) -> None:
    with pytest.raises(GridError) as raised:
        load_grid(write_grid(UNET_GRID))
    (problem,) = raised.value.problems
    line = line_of(UNET_GRID, "arch: [segnet]")
    assert problem.startswith(f"ablations.swap.arch[0] (line {line}): model:")
    assert "no skip connections for attention gates" in problem
    fixed = UNET_GRID.replace("    arch: [segnet]\n", "")
    variants = {v.name: v for v in expand_variants(load_grid(write_grid(fixed, "ok.yaml")))}
    assert list(variants) == [
        "baseline",
        "no-attention",
        "no-deep-supervision",
        "no-skips",
        "block=residual",
        "bottleneck=aspp",
        "se=true",
        "aux_weight=0.3",
        "segnet",
    ]
    assert variants["no-skips"].changes == {"model.skips": False, "model.attention": False}
    assert variants["segnet"].recipe.model.arch == "segnet"


def test_deep_supervision_needs_two_levels(
    write_grid: WriteGrid, minimal: str, line_of: Callable[[str, str], int]
) -> None:
    text = minimal.replace("widths: [8, 16, 32]", "widths: [8, 16]\n    deep_supervision: true")
    with pytest.raises(GridError) as raised:
        load_grid(write_grid(text))
    (problem,) = raised.value.problems
    assert problem.startswith(f"baseline.model (line {line_of(text, 'model:')})")
    assert "needs depth >= 2" in problem


def test_aux_weights_are_bounded(write_grid: WriteGrid, minimal: str) -> None:
    text = minimal.replace("epochs: 1", "epochs: 1\n    aux_weight: 0\n    aux_decay: 1.5")
    with pytest.raises(GridError) as raised:
        load_grid(write_grid(text))
    text_of = "\n".join(raised.value.problems)
    assert "baseline.train.aux_weight (line" in text_of and "greater than 0" in text_of
    assert "baseline.train.aux_decay (line" in text_of and "less than or equal to 1" in text_of


def test_components_command_lists_the_new_parts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grid", "components"]) == 0
    out = capsys.readouterr().out
    for name in ("attention", "se", "deep-supervision", "residual", "aspp"):
        assert f"\n  {name} " in out
    assert "arch (model.arch)" in out and "one of: unet, segnet" in out
    assert "block (model.block)" in out and "one of: plain, residual" in out
    assert "bottleneck (model.bottleneck)" in out and "one of: plain, aspp" in out
    assert "aux_weight (train.aux_weight)" in out
