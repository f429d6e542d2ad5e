"""Input ablations declared in YAML: swaps of the input mode, stain normalisation and the
training resolution, the stain-norm removal, and what `grid check` refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.cli import main
from ablate.grid import load_grid_variants

GRIDS = Path(__file__).resolve().parents[2] / "grids"


def test_the_inputs_grid_swaps_what_the_network_sees() -> None:
    _, variants = load_grid_variants(GRIDS / "inputs.yaml")
    changes = {variant.name: variant.changes for variant in variants}
    assert changes["input=hematoxylin"] == {"augment.input": "hematoxylin"}
    assert changes["stain_norm=macenko"] == {"augment.stain_norm": "macenko"}
    assert changes["image_size=32"] == {"train.image_size": 32}


def test_stain_norm_is_removable(write_grid, minimal: str) -> None:
    grid = minimal + "  augment: {stain_norm: reinhard}\nablations: {remove: [stain-norm]}\n"
    _, variants = load_grid_variants(write_grid(grid))
    assert variants[1].name == "no-stain-norm"
    assert variants[1].changes == {"augment.stain_norm": "none"}


@pytest.mark.parametrize(
    ("ablations", "says"),
    [
        ("swap: {input: [grey]}", "unknown input value|Input should be 'rgb', 'gray'"),
        ("swap: {image_size: [62]}", "train.image_size 62 is not a multiple of 4 = 2**2"),
        ("remove: [stain-norm]", "the baseline has stain_norm: none"),
        ("swap: {stain_norm: [vahadane]}", "Input should be 'none', 'macenko' or 'reinhard'"),
    ],
)
def test_grid_check_refuses_with_the_reason(
    write_grid, minimal: str, capsys, ablations: str, says: str
) -> None:
    path = write_grid(minimal + f"ablations: {{{ablations}}}\n")  # depth 2: widths [8, 16, 32]
    assert main(["grid", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "ablations." in err and "(line" in err
    assert any(part in err for part in says.split("|")), err


def test_components_lists_the_input_keys(capsys) -> None:
    assert main(["grid", "components"]) == 0
    out = capsys.readouterr().out
    assert "input (augment.input)" in out and "one of: rgb, gray, hematoxylin, eosin" in out
    assert "stain_norm (augment.stain_norm)" in out
    assert "image_size (train.image_size)" in out and "a multiple of 2**depth" in out
    assert "stain-norm" in out
