"""The results store: atomic writes, completion marks, whole-table reads (real Parquet files)."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from ablate.errors import MachineError, UserError, out_of_space
from ablate.store import (
    ResultStore,
    check_writable,
    parse_run_file_name,
    resolve_study,
    run_file_name,
)
from ablate.store.fs import stops_when_disk_full


def _class_rows(dice: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "category": ["Normal", "Polyp"],
            "tp": [5, 6],
            "fp": [1, 0],
            "fn": [0, 2],
            "tn": [9, 9],
            "dice": [dice, dice / 2],
        }
    )


def _runs_row(status: str, error: str | None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "status": [status],
            "error": [error],
            "epochs": [1],
            "best_epoch": pd.array([None if error else 1], dtype="Int64"),
        }
    )


def test_write_then_read_whole_table(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "study", study="demo")
    variants = ["baseline", "norm=none", "no-skip-1"]
    for variant in variants:
        for seed in (0, 1):
            store.write("class_metrics", variant, seed, _class_rows(0.5 + seed / 10))

    frame = store.read("class_metrics")
    assert len(frame) == 3 * 2 * 2
    assert list(frame.columns[:3]) == ["study", "variant", "seed"]
    assert set(frame["variant"]) == set(variants)
    assert (frame["study"] == "demo").all()
    # The contract: plain pandas reads a whole table from its folder.
    with_pandas = pd.read_parquet(tmp_path / "study" / "results" / "class_metrics")
    assert len(with_pandas) == 12
    assert with_pandas.groupby(["variant", "seed"]).size().eq(2).all()
    assert sorted(p.name for p in (tmp_path / "study/results/class_metrics").iterdir())[0] == (
        "variant=baseline__seed=0.parquet"
    )


def test_runs_mark_completion_and_mixed_null_columns_read(tmp_path: Path) -> None:
    store = ResultStore(tmp_path, study="demo")
    store.write("class_metrics", "baseline", 2, _class_rows(0.9))
    assert store.completed() == set()  # tables without a runs file: not finished
    store.write("runs", "baseline", 0, _runs_row("ok", None))
    store.write("runs", "lr=1e6", 1, _runs_row("diverged", "loss became nan"))
    assert store.completed() == {("baseline", 0), ("lr=1e6", 1)}
    # `error` is None in one file and text in the other: both readers must still cope.
    runs = pd.read_parquet(tmp_path / "results" / "runs")
    assert sorted(runs["status"]) == ["diverged", "ok"]
    assert store.read("runs")["error"].isna().sum() == 1


def test_absent_table_reads_empty(tmp_path: Path) -> None:
    assert ResultStore(tmp_path).read("history").empty
    assert ResultStore(tmp_path).completed() == set()


def test_rewrite_replaces_the_file(tmp_path: Path) -> None:
    store = ResultStore(tmp_path, study="demo")
    store.write("class_metrics", "baseline", 0, _class_rows(0.1))
    store.write("class_metrics", "baseline", 0, _class_rows(0.7))
    frame = store.read("class_metrics")
    assert len(frame) == 2 and frame["dice"].max() == pytest.approx(0.7)


def test_file_names_round_trip_odd_variant_names() -> None:
    for variant in ["baseline", "model.norm=batch", "a/b", "x__seed=3", "50%"]:
        assert parse_run_file_name(run_file_name(variant, 4)) == (variant, 4)
        assert "/" not in run_file_name(variant, 4)
    assert parse_run_file_name(".variant=a__seed=0.parquet.tmp-1234") is None


def test_file_uri_goes_through_pyarrow_filesystem(tmp_path: Path) -> None:
    store = ResultStore(f"file://{tmp_path}/study", study="demo")
    store.write("runs", "baseline", 0, _runs_row("ok", None))
    assert store.completed() == {("baseline", 0)}
    assert (tmp_path / "study/results/runs/variant=baseline__seed=0.parquet").is_file()


def test_put_dir_copies_a_local_folder(tmp_path: Path) -> None:
    source = tmp_path / "scratch"
    (source / "sub").mkdir(parents=True)
    (source / "best.pt").write_bytes(b"weights")
    (source / "sub" / "events").write_text("tb")
    location = resolve_study(f"file://{tmp_path}/study")
    location.put_dir(source, "checkpoints", "baseline", "seed=0")
    target = tmp_path / "study/checkpoints/baseline/seed=0"
    assert (target / "best.pt").read_bytes() == b"weights"
    assert (target / "sub" / "events").read_text() == "tb"


# The child writes one complete run, then dies (os._exit, like a SIGKILL) after writing only
# part of the second run's bytes, through a filesystem wrapper that cuts the stream.
KILLED_WRITER = textwrap.dedent(
    """
    import os, sys
    import pandas as pd
    from ablate.store import ResultStore

    class CutStream:
        def __init__(self, stream):
            self.stream = stream
        def write(self, data):
            self.stream.write(data[: len(data) // 2])
            self.stream.flush()
            os._exit(9)
        def __enter__(self):
            return self
        def __exit__(self, *args):
            self.stream.close()

    class DyingFS:
        def __init__(self, fs):
            self.fs = fs
        def open_output_stream(self, path):
            return CutStream(self.fs.open_output_stream(path))
        def __getattr__(self, name):
            return getattr(self.fs, name)

    store = ResultStore(sys.argv[1], study="demo")
    frame = pd.DataFrame({"status": ["ok"], "epochs": [1]})
    store.write("runs", "baseline", 0, frame)
    object.__setattr__(store.location, "fs", DyingFS(store.location.fs))
    store.write("runs", "baseline", 1, frame)
    """
)


def test_interrupted_write_leaves_no_finished_file(tmp_path: Path) -> None:
    study = tmp_path / "study"
    child = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(study)], capture_output=True)
    assert child.returncode == 9, child.stderr.decode()
    folder = study / "results" / "runs"
    leftovers = [p for p in folder.iterdir() if p.name.startswith(".")]
    assert leftovers and leftovers[0].stat().st_size > 0  # the write really died midway
    store = ResultStore(study)
    assert store.completed() == {("baseline", 0)}
    assert len(store.read("runs")) == 1
    assert len(pd.read_parquet(folder)) == 1  # pyarrow skips the hidden partial file


def test_unwritable_study_dir_is_a_user_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="cannot be written"):
        check_writable(resolve_study(blocker / "study"))


def test_unknown_uri_scheme_is_a_user_error() -> None:
    with pytest.raises(UserError, match="nosuch://bucket"):
        resolve_study("nosuch://bucket/study")


def test_a_write_on_a_full_disk_becomes_one_machine_error(
    small_disk: Callable[[int], Path], fill_disk: Callable[[Path], Path]
) -> None:
    disk = small_disk(4)
    study = resolve_study(disk / "study")
    study.makedirs()
    fill_disk(disk)
    stopped = r"study is full \(0 MiB free; writing the summary stopped\)"
    with (
        pytest.raises(MachineError, match=stopped),
        stops_when_disk_full(study, "writing the summary"),
    ):
        ResultStore(study).write("runs", "baseline", 0, pd.DataFrame({"seed": [0]}))
    assert [path.name for path in (disk / "study").rglob("*") if path.is_file()] == []
    with pytest.raises(ValueError), stops_when_disk_full(study, "anything"):
        raise ValueError("not a disk problem: passes through")


def test_out_of_space_reads_errno_and_pyarrow_messages() -> None:
    assert out_of_space(OSError(errno.ENOSPC, "No space left on device"))
    assert out_of_space(OSError("[Errno 28] Error writing bytes. Detail: No space left on device"))
    assert not out_of_space(OSError(errno.EACCES, "Permission denied"))
    assert not out_of_space(ValueError("No space left on device"))
