"""`ablate summarize` end to end on hand-built stores: files, report, partial studies, CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from ablate.cli import main
from ablate.errors import UserError
from ablate.report.commands import summarize_command
from ablate.report.inference import TABLE_COLUMNS
from ablate.report.sections import ReportSection
from ablate.report.stats import METRICS
from ablate.report.summarize import summarize
from ablate.store import StudyDir

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_full_study_writes_every_output(study_factory, spec, capsys) -> None:
    study_dir = study_factory()
    summarize_command(str(study_dir), metric="dice")
    out = study_dir / "summary"
    deltas = pd.read_csv(out / "deltas.csv")
    assert list(deltas.columns) == TABLE_COLUMNS
    assert list(pd.read_parquet(out / "deltas.parquet").columns) == TABLE_COLUMNS
    # 3 non-baseline variants x (3 categories + macro) x 5 metrics.
    assert len(deltas) == 3 * 4 * 5
    assert set(deltas["category"]) == {*spec.CATEGORIES, "macro"}
    for metric in METRICS:
        text = (out / f"deltas_{metric}.md").read_text()
        assert "| baseline (mean ± sd) |" in text
        header = "| variant | Adenocarcinoma | Normal | Polyp | macro | n |"
        assert header in text
        assert text.count("\n| ") == 3 + 3  # header, rule, baseline, 3 variants
    dice_md = (out / "deltas_dice.md").read_text()
    assert re.search(r"\| no-skip \| -0\.\d{3} ± 0\.\d{3} \*", dice_md)
    assert "## Best" in (out / "ranking.md").read_text()
    assert set(pd.read_csv(out / "ranking.csv")["variant"]) == set(spec.VARIANTS)
    for png in ("delta_heatmap_dice.png", "forest_dice.png", "training_curves.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "report.html" in capsys.readouterr().out


def test_report_is_self_contained(study_factory) -> None:
    study_dir = study_factory()
    summarize_command(str(study_dir), metric="iou")
    page = (study_dir / "summary" / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<table>" in page and "iou deltas vs baseline" in page
    assert len(re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"', page)) == 3
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert all(s.startswith(("data:", "#")) for s in sources), sources
    assert "<script" not in page and "<link" not in page
    # dataset.json's dropped file "<odd>.png" is shown, escaped.
    assert "Polyp/image/&lt;odd&gt;.png" in page and "<odd>" not in page
    assert "sample predictions skipped" in page  # no checkpoints in a hand-built store


def test_partial_study_names_missing_failed_and_diverged(study_factory, capsys) -> None:
    study_dir = study_factory(
        skip={("no-skip", 3)},
        status={("wider", 1): "failed", ("same", 2): "diverged"},
    )
    # An unfinished run: class_metrics written, runs file not yet; and a temporary file.
    folder = study_dir / "results" / "class_metrics"
    frame = pd.read_parquet(folder / "variant=wider__seed=0.parquet").assign(seed=9)
    frame.to_parquet(folder / "variant=wider__seed=9.parquet")
    (folder / ".variant=wider__seed=8.parquet.tmp").write_bytes(b"half a file")
    summarize_command(str(study_dir))
    printed = capsys.readouterr().out
    assert "missing: no-skip seed 3" in printed
    assert "failed: wider seed 1 (RuntimeError: boom)" in printed
    assert "diverged: same seed 2\n" in printed
    deltas = pd.read_csv(study_dir / "summary" / "deltas.csv").set_index(
        ["variant", "category", "metric"]
    )
    assert deltas.loc[("no-skip", "macro", "dice"), "n_seeds"] == 3
    assert deltas.loc[("wider", "macro", "dice"), "n_seeds"] == 3  # failed seed 1 left out
    assert deltas.loc[("same", "macro", "dice"), "n_seeds"] == 3
    page = (study_dir / "summary" / "report.html").read_text()
    assert "13 of 16 expected runs finished ok." in page
    assert "missing: no-skip seed 3" in page and "failed: wider seed 1" in page


def test_missing_baseline_still_summarises(study_factory) -> None:
    study_dir = study_factory(skip={("baseline", s) for s in range(4)})
    summarize_command(str(study_dir))
    page = (study_dir / "summary" / "report.html").read_text()
    assert "No baseline run finished ok" in page
    assert "missing: baseline seed 0" in page


def test_early_stopping_on_test_is_flagged(study_factory) -> None:
    study_dir = study_factory()
    folder = study_dir / "results" / "runs"
    for path in folder.glob("*.parquet"):
        pd.read_parquet(path).assign(early_stopping_split="test").to_parquet(path)
    summarize_command(str(study_dir))
    page = (study_dir / "summary" / "report.html").read_text()
    assert 'class="warning"' in page and "optimistic" in page
    for name in ("deltas_dice.md", "deltas_iou.md", "ranking.md"):
        assert "Early stopping watched the TEST split" in (study_dir / "summary" / name).read_text()


def test_early_stopping_on_validation_is_not_flagged(study_factory) -> None:
    study_dir = study_factory()
    summarize_command(str(study_dir))
    for name in ("report.html", "deltas_dice.md", "ranking.md"):
        assert "optimistic" not in (study_dir / "summary" / name).read_text()


def test_cli_exit_codes(study_factory, spec, tmp_path: Path, capsys) -> None:
    study_dir = study_factory()
    assert main(["summarize", str(study_dir), "--metric", "recall"]) == 0
    assert (study_dir / "summary" / "delta_heatmap_recall.png").is_file()
    assert main(["summarize", str(tmp_path / "nope")]) == 2
    assert "study directory not found" in capsys.readouterr().err
    (tmp_path / "not-a-study").mkdir()
    (tmp_path / "not-a-study" / "notes.txt").write_text("mine")
    assert main(["summarize", str(tmp_path / "not-a-study")]) == 2
    assert "not a study directory" in capsys.readouterr().err
    empty = study_factory("empty", skip={(v, s) for v in spec.VARIANTS for s in spec.SEEDS})
    assert main(["summarize", str(empty)]) == 2
    assert "no finished runs yet" in capsys.readouterr().err


def test_unknown_metric_is_user_error(study_factory) -> None:
    with pytest.raises(UserError, match="--metric"):
        summarize_command(str(study_factory()), metric="f1")


def test_no_pruning_results_no_pruning_section(study_factory) -> None:
    study_dir = study_factory()
    summarize_command(str(study_dir))
    assert 'id="pruning"' not in (study_dir / "summary" / "report.html").read_text()


def test_extra_sections_are_embedded_with_their_files(study_factory) -> None:
    # A section another part adds (ablate.prune's real one is tested in tests/prune): the
    # report embeds its HTML once, lists it in the contents and writes its files.
    def section(study: StudyDir) -> ReportSection:
        return ReportSection("Extra", "extra", "<p>fragment</p>", {"extra/a.csv": b"x\n1\n"})

    study_dir = study_factory()
    summarize(StudyDir.open(study_dir), sections=[section, lambda study: None])
    page = (study_dir / "summary" / "report.html").read_text()
    assert page.count("<p>fragment</p>") == 1 and '<a href="#extra">' in page
    assert (study_dir / "summary" / "extra" / "a.csv").read_text() == "x\n1\n"


def test_variant_of_the_grid_without_any_run_is_missing(study_factory, spec) -> None:
    import yaml

    study_dir = study_factory()
    grid = yaml.safe_load((study_dir / "grid.yaml").read_text())
    grid["ablations"] = {"remove": ["skips"]}  # expands to the variant "no-skips"
    (study_dir / "grid.yaml").write_text(yaml.safe_dump(grid))
    summarize_command(str(study_dir))
    page = (study_dir / "summary" / "report.html").read_text()
    assert "16 of 20 expected runs finished ok." in page
    assert all(f"missing: no-skips seed {seed}" in page for seed in spec.SEEDS)


def test_full_disk_stops_the_summary_with_one_message(spec, small_disk, fill_disk, capsys) -> None:
    study_dir = spec.write_study(small_disk(8) / "study")
    runs_before = pd.read_parquet(study_dir / "results" / "runs")
    ballast = fill_disk(study_dir.parent)
    assert main(["summarize", str(study_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the disk is full") and err.count("\n") == 1, err
    assert "run the same command again" in err
    pd.testing.assert_frame_equal(pd.read_parquet(study_dir / "results" / "runs"), runs_before)
    ballast.unlink()  # room again: the same command writes the whole summary
    assert main(["summarize", str(study_dir)]) == 0
    assert (study_dir / "summary" / "report.html").is_file()


def test_every_variant_name_reaches_the_summary(study_factory, spec) -> None:
    # The report once had a reader of its own that dropped files named like temporaries:
    # a variant called `tmp-check` vanished. It reads through the store now.
    study_dir = study_factory()
    for seed in spec.SEEDS:
        spec.write_run(study_dir, "tmp-check", seed)
    summarize_command(str(study_dir))
    deltas = pd.read_csv(study_dir / "summary" / "deltas.csv")
    assert "tmp-check" in set(deltas["variant"])


def test_an_interrupted_summary_leaves_the_previous_one_whole(
    spec, small_disk, fill_disk, capsys
) -> None:
    # Room for the small tables but not for the figures and report.html: the new summary
    # cannot be written whole, so none of it replaces the old one.
    study_dir = spec.write_study(small_disk(8) / "study")
    assert main(["summarize", str(study_dir)]) == 0
    summary = study_dir / "summary"
    before = {path.name: path.read_bytes() for path in summary.iterdir()}
    spec.write_run(study_dir, "tmp-check", 0)  # new results: the next summary differs
    ballast = fill_disk(study_dir.parent)
    with ballast.open("r+b") as handle:  # give back 64 KiB
        handle.truncate(ballast.stat().st_size - (64 << 10))
    assert main(["summarize", str(study_dir)]) == 1
    assert "disk is full" in capsys.readouterr().err
    after = {path.name: path.read_bytes() for path in summary.iterdir()}
    assert after == before  # byte for byte, and no temporary file left behind
