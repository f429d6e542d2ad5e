"""Damaged, crafted and foreign study folders, through the real command line.

A study folder may be copied, edited or made by someone else: `ablate summarize`, `ablate
prune` and `ablate run` (continuing a study) must answer each damaged file with exit 2 and
one message naming it, print no traceback, and leave the folder byte for byte as it was. A
study folder must never make ablate write outside it, read the caller's environment into a
report, or follow `extends:` out of it; and `--out` never writes into a folder that ablate
did not make.

The study is the report tests' hand-built one (real Parquet, known counts,
tests/report/conftest.py), broken in one way per case.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from ablate_testing import load_conftest

from ablate.cli import main
from ablate.errors import UserError
from ablate.store import StudyDir

REPO = Path(__file__).resolve().parents[1]
EXIT_BAD_INPUT = 2


def _load_study_builder():
    """tests/report/conftest.py as a plain module (a conftest cannot be imported by name)."""
    return load_conftest("report/conftest.py")


BUILDER = _load_study_builder()
RUNS = Path("results", "runs", "variant=baseline__seed=0.parquet")
CLASS_METRICS = Path("results", "class_metrics", "variant=no-skip__seed=1.parquet")


def _rewrite(study: Path, relative: Path, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    path = study / relative
    change(pd.read_parquet(path)).to_parquet(path, index=False)


def _write(relative: str | Path, data: bytes) -> Callable[[Path], None]:
    def breaker(study: Path) -> None:
        path = study / relative
        if path.is_dir():
            path.rmdir()
        path.write_bytes(data)

    return breaker


def _table(relative: Path, change: Callable[[pd.DataFrame], pd.DataFrame]):
    return lambda study: _rewrite(study, relative, change)


def _make_dir(relative: str) -> Callable[[Path], None]:
    def breaker(study: Path) -> None:
        (study / relative).unlink()
        (study / relative).mkdir()

    return breaker


def _summary_as_file(study: Path) -> None:
    (study / "summary").write_text("not a folder")


def _grid_text(change: Callable[[str], str]) -> Callable[[Path], None]:
    def breaker(study: Path) -> None:
        grid = study / "grid.yaml"
        grid.write_text(change(grid.read_text()))

    return breaker


def _negative(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(fp=-frame["fp"])


def _nan(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(tn=float("nan"))


def _bloated(relative: Path) -> Callable[[Path], None]:
    """The file's first row on 600 rows with a 1 MiB text: ~100 KB of Parquet (one
    dictionary entry, zstd) that would take over 600 MB once read as plain text."""

    def breaker(study: Path) -> None:
        path = study / relative
        first = pq.read_table(path).slice(0, 1)
        first = first.set_column(
            first.schema.get_field_index("status"), "status", pa.array(["x" * 2**20])
        )
        rows = first.take(pa.array([0] * 600))
        pq.write_table(rows, path, compression="zstd", use_dictionary=True)

    return breaker


ALIAS_BOMB = "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\n"


@dataclass(frozen=True)
class Case:
    id: str
    breaker: Callable[[Path], None]
    culprit: tuple[str, ...]
    """Words the message must contain (the file, the problem)."""
    commands: tuple[str, ...] = ("summarize",)


CASES = [
    Case("runs-random-bytes", _write(RUNS, b"\x00garbage"), (str(RUNS), "not a readable Parquet")),
    Case("runs-empty-file", _write(RUNS, b""), (str(RUNS), "not a readable Parquet")),
    Case("runs-csv", _write(RUNS, b"status\nok\n"), (str(RUNS), "not a readable Parquet")),
    Case(
        "runs-no-status",
        _table(RUNS, lambda f: f.drop(columns="status")),
        (str(RUNS), "'status' is missing"),
    ),
    Case(
        "runs-unknown-status",
        _table(RUNS, lambda f: f.assign(status="great")),
        (str(RUNS), "status must be one of"),
    ),
    Case(
        "runs-seed-text",
        _table(RUNS, lambda f: f.assign(seed="zero")),
        (str(RUNS), "'seed' holds text, not numbers"),
    ),
    Case(
        "runs-of-another-run",
        _table(RUNS, lambda f: f.assign(variant="wider")),
        (str(RUNS), "rows are of another run"),
    ),
    Case(
        "runs-two-rows",
        _table(RUNS, lambda f: pd.concat([f, f])),
        (str(RUNS), "holds 2 rows; a run's file holds one"),
    ),
    Case(
        "runs-expands-past-the-limit",
        _bloated(RUNS),
        (str(RUNS), "once decoded, over the"),
    ),
    Case(
        "counts-category-twice",
        _table(CLASS_METRICS, lambda f: pd.concat([f, f.assign(tp=f["tp"] * 100)])),
        (str(CLASS_METRICS), "more than one row for category"),
    ),
    Case(
        "counts-missing-column",
        _table(CLASS_METRICS, lambda f: f.drop(columns="tp")),
        (str(CLASS_METRICS), "'tp' is missing"),
    ),
    Case(
        "counts-as-text",
        _table(CLASS_METRICS, lambda f: f.assign(tp=f["tp"].astype(str))),
        (str(CLASS_METRICS), "'tp' holds text, not numbers"),
    ),
    Case("counts-negative", _table(CLASS_METRICS, _negative), ("negative pixel counts",)),
    Case("counts-nan", _table(CLASS_METRICS, _nan), (str(CLASS_METRICS), "NaN")),
    Case(
        "counts-fractional",
        _table(CLASS_METRICS, lambda f: f.assign(fn=f["fn"] + 0.5)),
        ("fractional pixel counts",),
    ),
    Case("dataset-json-list", _write("dataset.json", b"[1, 2]"), ("dataset.json", "JSON list")),
    Case("dataset-json-latin1", _write("dataset.json", b'{"root": "\xe9"}'), ("dataset.json",)),
    Case("dataset-json-broken", _write("dataset.json", b"{"), ("dataset.json", "not valid JSON")),
    Case(
        "dataset-json-bad-counts",
        _write("dataset.json", b'{"counts": {"Polyp": -3}}'),
        ("dataset.json", "counts"),
    ),
    Case("summary-is-a-file", _summary_as_file, ("summary", "not a folder")),
    Case(
        "grid-not-utf8",
        _write("grid.yaml", b"study: \xff\xfe\n"),
        ("grid.yaml", "not UTF-8"),
        ("summarize", "prune"),
    ),
    Case("grid-is-a-folder", _make_dir("grid.yaml"), ("grid.yaml", "is not a file")),
    Case("grid-a-list", _write("grid.yaml", b"- 1\n- 2\n"), ("grid.yaml", "not a YAML mapping")),
    Case("grid-alias-bomb", _write("grid.yaml", ALIAS_BOMB.encode()), ("grid.yaml", "alias")),
    Case(
        "grid-extends-outside",
        _grid_text(lambda text: "extends: /etc/ablate.yaml\n" + text),
        ("grid.yaml", "extends"),
        ("summarize", "prune"),
    ),
    Case(
        "grid-bad-pruning",
        _grid_text(lambda text: text + "pruning: {methods: [l9]}\n"),
        ("grid.yaml", "pruning.methods"),
        ("summarize", "prune"),
    ),
    Case(
        "runs-config-not-json",
        _table(RUNS, lambda f: f.assign(config="{not json")),
        (str(RUNS), "stored run config is not valid"),
        ("prune",),
    ),
]

# `ablate status` reads the runs table and grid.yaml as well (not the run configs, metrics
# or dataset.json): a damaged one stops it the same way.
CASES = [
    replace(case, commands=(*case.commands, "status"))
    if case.id.startswith(("runs-", "grid-")) and case.id != "runs-config-not-json"
    else case
    for case in CASES
]


def _tiny_grid(folder: Path, data_root: Path) -> Path:
    """A one-run grid on `data_root` (never trained here: every command is refused first)."""
    grid = folder / "grid.yaml"
    grid.write_text(
        f"study: mine\ndata: {{root: {data_root}}}\nprotocol: {{seeds: 1}}\n"
        "baseline: {model: {widths: [4, 8]}, train: {image_size: 32, epochs: 1}}\n"
    )
    return grid


def _run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None):
    base = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "EBHI_SEG_ROOT")}
    return subprocess.run(
        [sys.executable, "-m", "ablate.cli", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder`: kind, content hash, link target and modification time."""
    entries = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        link = os.readlink(path) if path.is_symlink() else None
        is_file = path.is_file() and not path.is_symlink()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if is_file else None
        entries[str(path.relative_to(folder))] = (info.st_mode, info.st_mtime_ns, digest, link)
    return entries


def assert_one_clear_message(done: subprocess.CompletedProcess, culprit: tuple[str, ...]) -> None:
    shown = f"exit {done.returncode}\n--- stdout\n{done.stdout}--- stderr\n{done.stderr}"
    assert "Traceback" not in done.stdout + done.stderr, shown
    assert done.returncode == EXIT_BAD_INPUT, shown
    lines = done.stderr.rstrip("\n").splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    for word in culprit:
        assert word in done.stderr, f"{word!r} not named\n{shown}"


@pytest.mark.parametrize(
    ("case", "command"),
    [pytest.param(c, command, id=f"{c.id}-{command}") for c in CASES for command in c.commands],
)
def test_damaged_study_is_one_message_and_stays_as_it_was(
    tmp_path: Path, case: Case, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # In-process through the command line's own entry point (ablate.cli.main): the cases
    # are many, and a fresh interpreter each adds seconds; the subprocess path is covered
    # by the tests below and by tests/test_bad_input_catalogue.py.
    study = BUILDER.write_study(tmp_path / "study")
    case.breaker(study)
    before = snapshot(tmp_path)
    code = main([command, str(study)])
    captured = capsys.readouterr()
    done = subprocess.CompletedProcess([command], code, captured.out, captured.err)
    assert_one_clear_message(done, case.culprit)
    assert snapshot(tmp_path) == before, "a refused command changed the folder"


def test_a_damaged_runs_file_stops_a_resumed_run_before_any_work(
    tmp_path: Path, synthetic_root: Path
) -> None:
    from ablate.grid import dump_grid, load_grid

    grid = _tiny_grid(tmp_path, synthetic_root)
    study = tmp_path / "study"
    study.mkdir()
    (study / "grid.yaml").write_text(dump_grid(load_grid(grid)))
    (study / "dataset.json").write_text(json.dumps({"counts": {}, "dropped": []}))
    (study / "results" / "runs").mkdir(parents=True)
    (study / "results" / "runs" / "variant=baseline__seed=0.parquet").write_bytes(b"junk")
    before = snapshot(tmp_path)
    done = _run_cli(["run", str(grid), "--out", str(study)], tmp_path)
    assert_one_clear_message(done, ("variant=baseline__seed=0.parquet", "not a readable"))
    assert snapshot(tmp_path) == before
    (study / "grid.yaml").write_bytes(b"study: \xff\n")  # and a damaged stored grid
    before = snapshot(tmp_path)
    done = _run_cli(["run", str(grid), "--out", str(study)], tmp_path)
    assert_one_clear_message(done, ("grid.yaml", "not UTF-8"))
    assert snapshot(tmp_path) == before


@pytest.mark.ray
def test_a_junk_checkpoint_is_named_by_prune_and_skipped_by_the_summary(
    tmp_path: Path, ray_session: object, capsys: pytest.CaptureFixture[str]
) -> None:
    study = BUILDER.write_study(tmp_path / "study")
    for variant in BUILDER.VARIANTS:
        folder = study / "checkpoints" / variant / "seed=0"
        folder.mkdir(parents=True)
        (folder / "best.pt").write_bytes(b"not a checkpoint")
    summarized = _run_cli(["summarize", str(study)], tmp_path)
    assert summarized.returncode == 0, summarized.stderr
    assert "sample predictions skipped" in summarized.stdout
    assert "best.pt: not a checkpoint ablate saved" in summarized.stdout
    # In-process on the session's Ray (a fresh local Ray per command costs seconds here).
    options = ["--variants", "baseline", "--scope", "global", "--amounts", "0.5"]
    assert main(["prune", str(study), *options]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "baseline/seed=0/best.pt: not a checkpoint ablate saved" in err


def test_stored_grid_is_read_verbatim_never_from_the_environment(tmp_path: Path) -> None:
    study = BUILDER.write_study(tmp_path / "study")
    grid = study / "grid.yaml"
    stored = yaml.safe_load(grid.read_text())
    stored["data"] = {"root": "/data/${ABLATE_SECRET}", "synthetic": None}
    grid.write_text(yaml.safe_dump(stored))
    done = _run_cli(["summarize", str(study)], tmp_path, {"ABLATE_SECRET": "hunter2"})
    assert done.returncode == 0, done.stderr
    report = (study / "summary" / "report.html").read_text()
    assert "hunter2" not in report + done.stdout + done.stderr
    assert "/data/${ABLATE_SECRET}" in report


def test_summary_links_never_write_outside_the_study(tmp_path: Path) -> None:
    study = BUILDER.write_study(tmp_path / "study")
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "important.html"
    victim.write_text("keep me")
    # report.html as a link out of the study: replaced by the real report, target untouched.
    (study / "summary").mkdir()
    (study / "summary" / "report.html").symlink_to(victim)
    done = _run_cli(["summarize", str(study)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "keep me"
    assert not (study / "summary" / "report.html").is_symlink()
    # summary/ itself as a link out of the study: refused, nothing written there.
    for entry in (study / "summary").iterdir():
        entry.unlink()
    (study / "summary").rmdir()
    (study / "summary").symlink_to(outside, target_is_directory=True)
    before = snapshot(tmp_path)
    done = _run_cli(["summarize", str(study)], tmp_path)
    assert_one_clear_message(done, ("summary", "outside the study directory"))
    assert snapshot(tmp_path) == before


def test_run_out_refuses_a_folder_it_did_not_make(tmp_path: Path, synthetic_root: Path) -> None:
    grid = _tiny_grid(tmp_path, synthetic_root)
    folder = tmp_path / "paper"
    (folder / "summary").mkdir(parents=True)
    (folder / "dataset.json").write_text("my own notes")
    (folder / "summary" / "report.html").write_text("my report")
    before = snapshot(tmp_path)
    done = _run_cli(["run", str(grid), "--out", str(folder)], tmp_path)
    assert_one_clear_message(done, (str(folder), "not empty and is not a study directory"))
    assert snapshot(tmp_path) == before


def test_train_out_refuses_a_folder_that_is_not_a_run_folder(
    tmp_path: Path, synthetic_root: Path
) -> None:
    grid = _tiny_grid(tmp_path, synthetic_root)
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "best.pt").write_bytes(b"someone's model")
    (folder / "history.parquet").write_bytes(b"someone's table")
    before = snapshot(tmp_path)
    done = _run_cli(["train", str(grid), "--seed", "0", "--out", str(folder)], tmp_path)
    assert_one_clear_message(done, (str(folder), "not an `ablate train` run folder"))
    assert snapshot(tmp_path) == before


def test_train_out_refuses_links_among_the_files_it_writes(
    tmp_path: Path, synthetic_root: Path
) -> None:
    """A run folder (run.json present) whose best.pt or tensorboard/ is a link out of it:
    refused before training, the link's target untouched."""
    grid = _tiny_grid(tmp_path, synthetic_root)
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "run.json").write_text("{}")
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"keep me")
    (folder / "best.pt").symlink_to(victim)
    (folder / "tensorboard").symlink_to(tmp_path, target_is_directory=True)
    before = snapshot(tmp_path)
    done = _run_cli(["train", str(grid), "--seed", "0", "--out", str(folder)], tmp_path)
    assert_one_clear_message(done, (str(folder), "best.pt, tensorboard", "symbolic link"))
    assert snapshot(tmp_path) == before


def test_a_checkpoint_replaces_a_link_instead_of_writing_through_it(tmp_path: Path) -> None:
    """What every run does for initial.pt and best.pt (in a study or a --out folder)."""
    import torch  # here: the other cases of this module never load torch

    from ablate.train.run import save_checkpoint

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "run" / "best.pt"
    link.parent.mkdir()
    link.symlink_to(victim)
    save_checkpoint({"weight": torch.ones(2)}, link)
    assert victim.read_text() == "keep me"
    assert not link.is_symlink()
    assert torch.equal(torch.load(link, weights_only=True)["weight"], torch.ones(2))
    assert sorted(p.name for p in link.parent.iterdir()) == ["best.pt"]  # no temporary left


def test_tune_state_never_goes_through_a_link_out_of_the_study(tmp_path: Path) -> None:
    study = BUILDER.write_study(tmp_path / "study")
    outside = tmp_path / "outside"
    outside.mkdir()
    (study / ".tune").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UserError, match=r"\.tune leads outside the study directory"):
        StudyDir.open(study).tune_path()
