"""The shipped grids that use the architecture components: ebhi_architecture gains them,
ebhi_paper compares U-Net with SegNet, components.yaml is the quickstart-sized study of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.config import ModelConfig
from ablate.grid import expand_variants, load_grid
from ablate.models import ARCHS
from ablate.models.blocks import BLOCKS
from ablate.models.bottlenecks import BOTTLENECKS

GRIDS = Path(__file__).resolve().parents[2] / "grids"
DEFAULT = ModelConfig()
FLAGS = ("se", "attention", "deep_supervision")


@pytest.fixture(autouse=True)
def ebhi_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EBHI_SEG_ROOT", str(tmp_path / "EBHI-SEG"))


def _covers_every_component(path: Path) -> None:
    """Every registered arch, block and bottleneck, and every flag on, in some variant."""
    models = [variant.recipe.model for variant in expand_variants(load_grid(path))]
    assert {m.arch for m in models} == set(ARCHS.names())
    assert {m.block for m in models} == set(BLOCKS.names())
    assert {m.bottleneck for m in models} == set(BOTTLENECKS.names())
    for flag in FLAGS:
        assert any(getattr(m, flag) for m in models), flag


def test_ebhi_architecture_gains_the_components() -> None:
    _covers_every_component(GRIDS / "ebhi_architecture.yaml")
    names = {v.name for v in expand_variants(load_grid(GRIDS / "ebhi_architecture.yaml"))}
    assert {
        "no-skip-1",
        "no-skips",
        "upsampling=bilinear",
        "arch=segnet",
        "all-components",
    } <= names


def test_ebhi_paper_compares_unet_and_segnet_under_one_protocol() -> None:
    grid = load_grid(GRIDS / "ebhi_paper.yaml")
    baseline, segnet = expand_variants(grid)
    assert baseline.recipe.model.arch == "unet"
    assert segnet.name == "arch=segnet" and segnet.changes == {"model.arch": "segnet"}
    assert grid.baseline.train.lr == 3e-6 and grid.baseline.train.batch_size == 1


def test_components_study_is_quickstart_sized() -> None:
    path = GRIDS / "components.yaml"
    grid, quickstart = load_grid(path), load_grid(GRIDS / "quickstart.yaml")
    assert grid.data == quickstart.data and grid.data.synthetic is not None
    assert grid.resources.gpu == 0 and grid.protocol == quickstart.protocol
    assert grid.baseline.model == quickstart.baseline.model
    assert grid.baseline.train == quickstart.baseline.train  # aux weights at their defaults
    _covers_every_component(path)
    variants = expand_variants(grid)
    assert len(variants) * len(grid.protocol.seed_list()) <= 30
    # Each single-component variant changes one model key; the last one changes them all.
    assert all(len(v.changes) == 1 for v in variants[1:-1])
    assert variants[-1].name == "all-components"
