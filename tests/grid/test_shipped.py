"""Every grid shipped in grids/ loads, expands and round-trips; the study grids say what the
issue asks for."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.grid import dump_grid, expand_variants, load_grid, runs_count
from ablate.grid.expand import SAFE_NAME

GRIDS = Path(__file__).resolve().parents[2] / "grids"
SHIPPED = sorted(GRIDS.glob("*.yaml"))


@pytest.fixture(autouse=True)
def ebhi_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The ebhi_* grids read EBHI_SEG_ROOT; loading a grid does not open the dataset."""
    monkeypatch.setenv("EBHI_SEG_ROOT", str(tmp_path / "EBHI-SEG"))


def _names(path: Path) -> list[str]:
    return [variant.name for variant in expand_variants(load_grid(path))]


def test_grids_folder_is_not_empty() -> None:
    expected = {
        "quickstart",
        "ebhi_small",
        "ebhi_training",
        "ebhi_architecture",
        "ebhi_data",
        "ebhi_paper",
        "ebhi_pruning",
    }
    assert expected <= {path.stem for path in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=[path.name for path in SHIPPED])
def test_shipped_grid_loads_and_expands(path: Path, tmp_path: Path) -> None:
    grid = load_grid(path)
    variants = expand_variants(grid)
    names = [variant.name for variant in variants]
    assert names[0] == "baseline" and variants[0].changes == {}
    assert len(set(names)) == len(names)
    assert all(SAFE_NAME.fullmatch(name) for name in names), names
    assert all(variant.changes for variant in variants[1:])
    assert len({variant.recipe.model_dump_json() for variant in variants}) == len(variants)
    assert runs_count(grid) == len(variants) * len(grid.protocol.seed_list())
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(dump_grid(grid))
    assert load_grid(resolved) == grid


def test_quickstart_is_a_small_cpu_study_on_synthetic_data() -> None:
    grid = load_grid(GRIDS / "quickstart.yaml")
    assert grid.data.synthetic is not None and grid.data.root is None
    assert grid.resources.gpu == 0
    assert grid.protocol.seed_list() == [0, 1, 2]
    assert grid.baseline.train.image_size <= 64 and grid.baseline.train.epochs <= 10
    assert len(_names(GRIDS / "quickstart.yaml")) >= 5


def test_ebhi_grids_read_the_dataset_root_from_the_environment(tmp_path: Path) -> None:
    grid = load_grid(GRIDS / "ebhi_small.yaml")
    assert grid.data.root == str(tmp_path / "EBHI-SEG")
    assert grid.baseline.model.widths == [16, 32, 64, 128]  # override of ebhi_base
    assert grid.baseline.train.balanced  # inherited from ebhi_base
    assert {"no-skips", "no-norm", "no-augmentation", "no-deepest-level"} <= set(
        _names(GRIDS / "ebhi_small.yaml")
    )


def test_ebhi_training_covers_the_original_choices() -> None:
    grid = load_grid(GRIDS / "ebhi_training.yaml")
    assert grid.baseline.model.widths == [64, 128, 256, 512, 1024]
    recipes = [variant.recipe for variant in expand_variants(grid)]
    assert {r.train.optimizer for r in recipes} == {"adam", "sgd"}
    assert {r.train.loss for r in recipes} == {"dice", "jaccard", "bce", "0.7*dice+0.3*jaccard"}
    norms = {r.model.norm for r in recipes}
    assert norms == {"batch", "batch-double", "instance", "instance-double", "none"}
    assert {r.train.batch_size for r in recipes} == {1, 4, 16, 32}
    assert {r.train.lr for r in recipes} == {1e-3, 1e-4, 3e-6}
    assert {r.train.patience for r in recipes} == {3, 6, 15}
    assert {r.model.init for r in recipes} == {"kaiming", "default"}


def test_ebhi_architecture_covers_depth_width_and_each_skip() -> None:
    grid = load_grid(GRIDS / "ebhi_architecture.yaml")
    variants = expand_variants(grid)
    assert {len(v.recipe.model.widths) for v in variants} == {3, 4, 5}
    assert [32, 64, 128, 256, 512] in [v.recipe.model.widths for v in variants]
    names = {v.name for v in variants}
    assert {f"no-skip-{level}" for level in range(1, 5)} <= names
    assert {"upsampling=bilinear", "dropout=0.1"} <= names


def test_ebhi_data_removes_each_augmentation_op() -> None:
    variants = expand_variants(load_grid(GRIDS / "ebhi_data.yaml"))
    baseline_ops = set(variants[0].recipe.augment.ops)
    removed = {op for v in variants for op in baseline_ops - set(v.recipe.augment.ops)}
    assert removed == baseline_ops
    names = {v.name for v in variants}
    assert {"no-augmentation", "no-balanced", "copies=3", "normalize=true"} <= names
    assert {"input=hematoxylin", "stain_norm=macenko"} <= names


def test_ebhi_paper_uses_the_papers_protocol() -> None:
    grid = load_grid(GRIDS / "ebhi_paper.yaml")
    protocol = grid.protocol
    train_share = (1 - protocol.test_fraction) * (1 - protocol.val_fraction)
    val_share = (1 - protocol.test_fraction) * protocol.val_fraction
    assert (train_share, val_share, protocol.test_fraction) == pytest.approx((0.4, 0.4, 0.2))
    assert grid.baseline.train.lr == 3e-6 and grid.baseline.train.batch_size == 1


def test_ebhi_pruning_declares_a_pruning_section() -> None:
    grid = load_grid(GRIDS / "ebhi_pruning.yaml")
    assert grid.pruning is not None and grid.pruning.enabled
    assert grid.ablations.remove == [] and grid.ablations.swap == {}
