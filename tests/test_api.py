"""The Python API: `import ablate` stays light, every public name resolves, a study runs and
reads back end to end on the synthetic data, and the README's "Use from Python" examples run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import ablate
from ablate.grid import dump_grid
from ablate.store import StudyDir

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "study": "api",
    "protocol": {"seeds": 2, "test_fraction": 0.25, "val_fraction": 0.15},
    "baseline": {
        "model": {"widths": [4, 8, 16]},
        "train": {"image_size": 32, "epochs": 1, "batch_size": 8, "patience": None},
        "augment": {"ops": {"hflip": 0.5}},
    },
    "ablations": {"swap": {"norm": ["none"]}},
    "resources": {"cpu": 1, "gpu": 0},
}


def test_import_ablate_loads_neither_torch_nor_ray() -> None:
    code = (
        "import sys, ablate; ablate.UserError; ablate.GridError; "
        "print(sorted(m for m in ('torch', 'ray', 'pandas', 'pydantic') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_public_name_resolves() -> None:
    for name in ablate.__all__:
        assert getattr(ablate, name) is not None, name
    assert set(ablate.__all__) <= set(dir(ablate))
    assert issubclass(ablate.GridError, ablate.UserError)
    assert issubclass(ablate.DatasetError, ablate.UserError)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ablate.nope  # noqa: B018


@pytest.mark.ray
def test_run_and_read_a_study_from_python(
    tmp_path: Path, synthetic_root: Path, ray_session: object, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({**TINY, "data": {"root": str(synthetic_root)}}))
    out = tmp_path / "out"
    with pytest.raises(ablate.GridError, match=r"--set baseline\.train\.epoch=2"):
        ablate.run(path, out=str(out), overrides=["baseline.train.epoch=2"])
    assert not out.exists()

    grid = ablate.load_grid(path, overrides=["protocol.seeds=[0, 1, 2]"])
    study = ablate.run(grid, out=str(out))
    assert isinstance(study, ablate.Study) and study.uri == str(out)
    assert "study api: 2 variants x 3 seeds = 6 runs" in capsys.readouterr().out
    assert study.grid == grid and study.name == "api"

    runs = study.runs
    assert len(runs) == 6 and (runs["status"] == "ok").all()
    assert len(study.class_metrics) == 6 * 6  # runs x categories
    assert set(study.image_metrics["variant"]) == {"baseline", "norm=none"}
    assert len(study.history) == 6  # one epoch each
    assert study.table("pruning").empty  # the grid does not prune

    # The deltas and scores are the summary's own numbers.
    summary = out / "summary"
    stored = pd.read_parquet(summary / "deltas.parquet")
    pd.testing.assert_frame_equal(study.deltas(metric=None), stored)
    dice = study.deltas("dice")
    pd.testing.assert_frame_equal(dice, stored[stored["metric"] == "dice"])
    assert set(dice["variant"]) == {"norm=none"} and (dice["n_seeds"] == 3).all()
    pd.testing.assert_frame_equal(study.scores(None), pd.read_parquet(summary / "scores.parquet"))

    status = study.status()
    assert status.state == "finished" and status.summary == "current"
    written = study.summarize("iou")
    assert str(summary / "report.html") in written
    assert str(summary / "delta_heatmap_iou.png") in written

    # Calling again continues the study: nothing is left, nothing is trained.
    capsys.readouterr()
    again = ablate.run(path, out=str(out), overrides=["protocol.seeds=[0, 1, 2]"])
    assert "skipping 6 finished run(s); 0 to run" in capsys.readouterr().out
    assert len(again.runs) == 6


def test_study_errors_are_typed(tmp_path: Path) -> None:
    with pytest.raises(ablate.UserError, match="study directory not found"):
        ablate.Study.open(tmp_path / "absent")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ablate.UserError, match="not a study directory"):
        ablate.Study.open(tmp_path / "plain")
    study_dir = StudyDir.open(tmp_path / "empty")
    study_dir.location.makedirs()
    study_dir.write_grid(dump_grid(ablate.load_grid(REPO / "grids" / "quickstart.yaml")))
    study_dir.write_dataset({"counts": {}, "dropped": [], "categories": []})
    study = ablate.Study.open(tmp_path / "empty")
    with pytest.raises(ablate.UserError, match="no table 'nope'; tables: runs"):
        study.table("nope")
    with pytest.raises(ablate.UserError, match="metric 'bogus' is not one of dice"):
        study.deltas("bogus")
    with pytest.raises(ablate.UserError, match="no finished runs yet"):
        study.deltas("dice")
    assert study.runs.empty and study.status().state == "stopped"


def test_a_bad_seed_is_named_without_a_command_line_option() -> None:
    """`train_one` is no command line: its message names the argument, not `--seed`."""
    with pytest.raises(ablate.UserError) as caught:
        ablate.train_one(REPO / "grids" / "quickstart.yaml", seed=-1)
    assert str(caught.value).startswith("seed -1: seeds are whole numbers from 0 to ")


def test_a_refused_study_names_no_command_line_option(tmp_path: Path) -> None:
    """`ablate.run` refuses a study made from another grid before Ray starts, in words that
    fit a caller who passed `out=` (no `--out`)."""
    grid = ablate.load_grid(REPO / "grids" / "quickstart.yaml")
    study_dir = StudyDir.open(tmp_path / "study")
    study_dir.location.makedirs()
    study_dir.write_grid(dump_grid(grid))
    study_dir.write_dataset({"counts": {}, "dropped": [], "categories": []})
    with pytest.raises(ablate.UserError, match="made from another grid") as caught:
        ablate.run(grid, out=str(tmp_path / "study"), overrides=["baseline.train.lr=0.5"])
    assert str(caught.value).endswith("use another study directory")
    assert "--out" not in str(caught.value)


def _python_examples(readme: str) -> list[str]:
    """The ```python blocks of the README's "Use from Python" section."""
    section = readme.split("\n## Use from Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


@pytest.mark.ray
@pytest.mark.slow
def test_the_readme_python_examples_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ray_session: object,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocks = _python_examples((REPO / "README.md").read_text())
    assert len(blocks) >= 3
    # The examples name repository paths; they run in a fresh folder holding the grid, with
    # the synthetic data generated into a private cache.
    (tmp_path / "grids").mkdir()
    shutil.copy(REPO / "grids" / "quickstart.yaml", tmp_path / "grids")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "cache"))
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)

    study = namespace["study"]
    assert isinstance(study, ablate.Study)
    runs = namespace["runs"]
    assert len(runs) == 2 * 2 and (runs["status"] == "ok").all()
    stored = pd.read_parquet(tmp_path / "runs" / "notebook" / "summary" / "deltas.parquet")
    pd.testing.assert_frame_equal(namespace["deltas"], stored[stored["metric"] == "dice"])
    assert list(namespace["macro"]["variant"]) == ["no-skips"]
    assert list(namespace["curves"].columns) == ["baseline", "no-skips"]
    assert "state: finished" in capsys.readouterr().out
    assert namespace["result"].status == "ok" and len(namespace["per_category"]) == 6
    assert "did you mean 'epochs'" in namespace["message"]
