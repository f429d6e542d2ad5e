"""`ablate run --set`: overrides change the runs, grid.yaml stores the result, and a later
run with other overrides resumes or is refused exactly as with an edited grid file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from ablate.cli import main
from ablate.grid import load_grid
from ablate.store import StudyDir

pytestmark = pytest.mark.ray


def _pairs(study: Path) -> set[tuple[str, int]]:
    runs = pd.read_parquet(study / "results" / "runs")
    return set(zip(runs["variant"], runs["seed"], strict=True))


def _mtimes(study: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in study.rglob("*") if p.is_file()}


def test_overrides_are_stored_and_resume_like_an_edited_grid(
    grid_writer: Callable[..., Path],
    tmp_path: Path,
    synthetic_root: Path,
    ray_session: object,
    capsys: pytest.CaptureFixture[str],
) -> None:
    grid = str(grid_writer(tmp_path, synthetic_root))  # 2 variants x seeds [0, 1]
    study = tmp_path / "out"
    one_seed = ["--set", "protocol.seeds=[1]", "--set", "ablations.swap.norm=[instance]"]
    assert main(["run", grid, "--out", str(study), *one_seed]) == 0
    assert "2 variants x 1 seed = 2 runs" in capsys.readouterr().out
    assert _pairs(study) == {("baseline", 1), ("norm=instance", 1)}
    stored = StudyDir.open(study).read_grid()
    assert stored.protocol.seed_list() == [1]
    assert stored.ablations.swap == {"norm": ["instance"]}
    # The stored grid is what the overridden grid resolves to, as from an edited file.
    assert stored == load_grid(grid, ["protocol.seeds=[1]", "ablations.swap.norm=[instance]"])

    # Other overrides that only add seeds (and change resources) continue the study.
    more = ["--set", "protocol.seeds=[1, 0]", "--set", "ablations.swap.norm=[instance]"]
    assert main(["run", grid, "--out", str(study), *more, "--set", "resources.cpu=0.5"]) == 0
    assert "skipping 2 finished run(s); 2 to run" in capsys.readouterr().out
    assert _pairs(study) == {(v, s) for v in ("baseline", "norm=instance") for s in (0, 1)}
    assert StudyDir.open(study).read_grid().protocol.seed_list() == [1, 0]

    # A changed hyperparameter, a dropped seed or variant is refused naming the key: exit 2,
    # and nothing in the study changes.
    before = _mtimes(study)
    assert main(["run", grid, "--out", str(study), *more, "--set", "baseline.train.lr=0.5"]) == 2
    error = capsys.readouterr().err
    assert "was made from another grid; changed: baseline.train.lr (0.001 -> 0.5)" in error
    fewer = ["--set", "protocol.seeds=[1]", "--set", "ablations.swap.norm=[instance]"]
    assert main(["run", grid, "--out", str(study), *fewer]) == 2
    assert "protocol.seeds (seeds [0] removed)" in capsys.readouterr().err
    assert main(["run", grid, "--out", str(study), "--set", "protocol.seeds=[1, 0]"]) == 2
    assert "ablations (variant 'norm=instance' removed)" in capsys.readouterr().err
    assert _mtimes(study) == before
