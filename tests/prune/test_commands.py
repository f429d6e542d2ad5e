"""`ablate prune` through the real CLI: bad input exits 2, a good call writes the tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.cli import main
from ablate.prune import study as prune_study_module
from ablate.prune.analysis import PRUNING
from ablate.store import ResultStore


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "l3_magic"], "valid: l1_unstructured"),
        (["--scope", "everything"], "valid: global, modules, groups, layers"),
        (["--amounts", "0.5,1.5"], "outside [0, 1]"),
        (["--amounts", "-0.1"], "outside [0, 1]"),
        (["--variants", "nope"], "valid: baseline"),
    ],
)
def test_bad_options_exit_2(
    study_dir: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["prune", str(study_dir), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (study_dir / "results" / PRUNING).exists()


def test_missing_study_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert main(["prune", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_study_without_runs_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prune", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert str(tmp_path) in error and "not a study directory" in error


def test_bad_grid_pruning_section_exits_2(
    study_dir: Path, grid_writer, capsys: pytest.CaptureFixture[str]
) -> None:
    grid_writer(study_dir, {})
    grid = study_dir / "grid.yaml"
    grid.write_text(grid.read_text().replace("[l1_unstructured,", "[l9,"))
    assert main(["prune", str(study_dir)]) == 2
    error = capsys.readouterr().err
    assert "grid.yaml: not a grid ablate stored" in error and "pruning.methods" in error


@pytest.mark.ray
def test_prune_on_ray_uses_grid_defaults_and_cli_overrides(
    study_dir: Path,
    grid_writer,
    ray_session: object,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def in_process(*args: object) -> None:
        raise AssertionError("with Ray up, runs must go to Ray tasks")

    monkeypatch.setattr(prune_study_module, "_run_local", in_process)
    grid_writer(
        study_dir, {"methods": ["random_structured"], "scopes": ["groups"], "amounts": [0.25]}
    )
    code = main(["prune", str(study_dir), "--scope", "global", "--amounts", "0.3,0.6"])
    assert code == 0
    out = capsys.readouterr().out
    assert "largest macro Dice drops" in out and "random_structured" in out
    table = ResultStore(study_dir).read(PRUNING)
    pruned = table[table["method"] != "none"]
    assert set(pruned["method"]) == {"random_structured"}  # from grid.yaml
    assert set(pruned["scope"]) == {"global"}  # CLI overrides grid.yaml
    assert sorted(set(pruned["amount"])) == [0.3, 0.6]
    assert sorted(set(table["seed"])) == [0, 1]
    assert (study_dir / "summary" / "pruning" / "amount_dice_baseline.png").is_file()


def _pruning_rows(study_dir: Path):
    table = ResultStore(study_dir).read(PRUNING)
    keys = ["seed", "method", "scope", "target", "amount", "category"]
    return table.sort_values(keys, ignore_index=True)


def test_new_settings_add_rows_and_keep_the_stored_ones(
    study_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = ["--methods", "l1_unstructured", "--scope", "groups", "--amounts", "0.5"]
    assert main(["prune", str(study_dir), *first]) == 0
    before = _pruning_rows(study_dir)
    # Amounts space- or comma-separated; a stored step (l1, groups, 0.5) is asked again.
    second = ["--methods", "l1_unstructured", "random_structured", "--scope", "groups"]
    assert main(["prune", str(study_dir), *second, "--amounts", "0.25", "0.5,0.75"]) == 0
    after = _pruning_rows(study_dir)
    steps = set(zip(after["method"], after["scope"], after["amount"], strict=True))
    methods = ("l1_unstructured", "random_structured")
    wanted = {(m, "groups", a) for m in methods for a in (0.25, 0.5, 0.75)}
    assert steps == {("none", "none", 0.0)} | wanted
    # Every row stored by the first call is still there, unchanged, and only once.
    kept = after.merge(before, how="inner")
    assert len(kept) == len(before)
    assert not after.duplicated(["seed", "method", "scope", "target", "amount", "category"]).any()
    # Only groups were pruned: the amount-vs-Dice figure shows the most sensitive group.
    assert (study_dir / "summary" / "pruning" / "amount_dice_baseline.png").is_file()
    # The report is rebuilt with its pruning section.
    report = (study_dir / "summary" / "report.html").read_text()
    assert '<section id="pruning">' in report and "Largest macro Dice drops" in report
    capsys.readouterr()
    # Nothing new asked: nothing analysed, the table stays as it is.
    stamp = {p: p.stat().st_mtime_ns for p in (study_dir / "results" / PRUNING).glob("*.parquet")}
    assert main(["prune", str(study_dir), *second, "--amounts", "0.25,0.5"]) == 0
    assert stamp == {p: p.stat().st_mtime_ns for p in stamp}
