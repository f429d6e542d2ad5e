"""`ablate status`: where a study stands, read without taking its lock.

Hand-built studies are written through the real store (real Parquet, a real study.lock) with
known durations and file times, so every count and estimate is computed here by hand; one
slow test runs a real `ablate run` in the background and asks for its status meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from ablate.cli import main
from ablate.config import DataConfig, GridConfig, Recipe, SyntheticConfig
from ablate.engine.lock import LockOwner, StudyLock
from ablate.engine.status import expected_seeds, study_status, time_left
from ablate.engine.study import prepare_study
from ablate.errors import UserError
from ablate.grid import dump_grid, load_grid
from ablate.store import StudyDir
from ablate.store.study import LOCK_FILE

VARIANTS = ["baseline", "no-skips", "norm=none"]
T0 = pd.Timestamp("2026-12-01 10:00:00", tz="UTC")


def _grid(seeds: list[int]) -> GridConfig:
    return GridConfig(
        study="handmade",
        data=DataConfig(synthetic=SyntheticConfig(per_class=4, size=32)),
        protocol={"seeds": seeds},
        baseline=Recipe(model={"widths": [4, 8]}, train={"image_size": 32}),
        ablations={"remove": ["skips"], "swap": {"norm": ["none"]}},
    )


def _runs_row(status: str, duration: float, finished: float, error: str | None) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "status": [status],
            "error": [error],
            "epochs": [3],
            "duration_s": [duration],
            "started_at": [T0 + pd.Timedelta(seconds=finished - duration)],
            "finished_at": [T0 + pd.Timedelta(seconds=finished)],
        }
    )
    return frame.astype({"error": "string", "status": "string"})


def _study(
    folder: Path, runs: dict[tuple[str, int], tuple[str, float, float, str | None]], seeds: int
) -> StudyDir:
    """A study of `_grid` holding `runs`: (variant, seed) -> (status, duration, finished at
    in seconds after T0, error), each written by the store's own writer."""
    study = StudyDir.open(folder)
    study.location.makedirs()
    study.write_grid(dump_grid(_grid(list(range(seeds)))))
    study.write_dataset({"root": "/data", "counts": {"A": 4}, "dropped": [], "categories": ["A"]})
    store = study.results("handmade")
    for (variant, seed), row in runs.items():
        store.write("runs", variant, seed, _runs_row(*row))
    return study


def _touch(path: Path, when: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    os.utime(path, (when, when))


def _files(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under `folder`: (mtime, size, first bytes), to prove nothing changed."""
    return {
        str(path.relative_to(folder)): (
            path.stat().st_mtime_ns,
            path.stat().st_size,
            path.read_bytes()[:64],
        )
        for path in folder.rglob("*")
        if path.is_file()
    }


FAILURES = {
    ("baseline", 0): ("ok", 10.0, 10.0, None),
    ("baseline", 1): ("ok", 20.0, 30.0, None),
    ("baseline", 2): ("ok", 30.0, 60.0, None),
    ("no-skips", 0): ("ok", 10.0, 10.0, None),
    ("no-skips", 2): ("failed", 4.0, 100.0, "Traceback (most recent call last):\nValueError: boom"),
    ("no-skips", 1): ("diverged", 6.0, 50.0, "loss is nan at epoch 2"),
}


def test_status_of_a_stopped_study_with_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = _study(tmp_path / "study", FAILURES, seeds=3)
    status = study_status(study)
    assert status.state == "stopped" and status.lock is None
    rows = {item.variant: item for item in status.variants}
    assert list(rows) == VARIANTS
    assert (rows["baseline"].ok, rows["baseline"].pending, rows["baseline"].mean_seed_s) == (
        3,
        0,
        20.0,
    )
    skips = rows["no-skips"]
    assert (skips.ok, skips.failed, skips.diverged, skips.pending) == (1, 1, 1, 0)
    assert skips.mean_seed_s == pytest.approx(20 / 3)
    # The last failure by finish time, its exception line only.
    assert skips.last_error == "failed seed 2: ValueError: boom"
    assert rows["norm=none"].pending == 3 and rows["norm=none"].mean_seed_s is None
    assert all(item.running == [] for item in status.variants)
    assert status.totals() == {
        "expected": 9,
        "ok": 4,
        "failed": 1,
        "diverged": 1,
        "pending": 3,
        "running": 0,
    }
    # Not running: no wall-clock estimate; the seed time left is 3 seeds at the study's mean
    # seed time (80 s over 6 finished seeds).
    assert status.time_left_s is None and status.parallelism == 0
    assert status.seed_time_left_s == pytest.approx(3 * 80 / 6)
    assert status.summary == "missing"

    assert main(["status", str(tmp_path / "study")]) == 0
    text = capsys.readouterr().out
    assert "state: stopped: runs are left" in text
    assert "no-skips" in text and "failed seed 2: ValueError: boom" in text
    assert "time left: not running; about 40s of seed time left" in text
    assert main(["status", str(tmp_path / "study"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(status.to_json()) | {"checked_at": printed["checked_at"]}
    assert printed["variants"][1]["last_error"] == "failed seed 2: ValueError: boom"
    assert printed["totals"]["failed"] == 1 and printed["time_left_s"] is None


def test_status_of_a_running_study_estimates_the_time_left(tmp_path: Path) -> None:
    runs = {
        ("baseline", 0): ("ok", 10.0, 10.0, None),
        ("baseline", 1): ("ok", 20.0, 30.0, None),
        ("baseline", 2): ("ok", 30.0, 60.0, None),
        ("no-skips", 0): ("ok", 12.0, 12.0, None),
    }
    study = _study(tmp_path / "study", runs, seeds=3)
    lock = StudyLock(study)
    lock.acquire()  # a real lock, held by this (live) process
    try:
        since = study.lock_time()
        # no-skips seed 1 started 5 s after the lock; norm=none seed 0 after 8 s. A file of
        # norm=none seed 1 from before the lock (an earlier, killed command) is not a run.
        folder = tmp_path / "study"
        _touch(folder / "checkpoints" / "no-skips" / "seed=1" / "initial.pt", since + 5)
        _touch(folder / "tensorboard" / "norm=none" / "seed=0" / "events", since + 8)
        _touch(folder / "checkpoints" / "norm=none" / "seed=1" / "initial.pt", since - 100)
        status = study_status(study, now=since + 10)
    finally:
        lock.release()
    assert status.state == "running"
    assert (status.lock.pid, status.lock.host, status.lock.alive) == (
        os.getpid(),
        socket.gethostname(),
        True,
    )
    rows = {item.variant: item for item in status.variants}
    assert rows["no-skips"].running == [1] and rows["no-skips"].pending == 1
    assert rows["norm=none"].running == [0] and rows["norm=none"].pending == 2
    assert status.parallelism == 2
    # no-skips: 12 - 5 s left of seed 1, then 12 s for seed 2 -> 19 s. norm=none (no finished
    # seed: the study's mean, 72 / 4 = 18 s): 18 - 2 left of seed 0, then 2 x 18 -> 52 s.
    # Two chains on two slots: the longer one decides.
    assert status.time_left_s == pytest.approx(52)
    assert status.seed_time_left_s == pytest.approx(19 + 52)
    text = status.format()
    assert f"running: `ablate run` pid {os.getpid()} on {socket.gethostname()}" in text
    assert "time left: about 52s with 2 seed(s) running side by side" in text


def test_a_lock_left_by_a_killed_command_is_not_a_running_study(tmp_path: Path) -> None:
    study = _study(tmp_path / "study", {("baseline", 0): ("ok", 5.0, 5.0, None)}, seeds=2)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    owner = LockOwner(int(gone.stdout), socket.gethostname(), "2026-12-01 10:00:00")
    (tmp_path / "study" / LOCK_FILE).write_text(owner.to_json())
    _touch(
        tmp_path / "study" / "checkpoints" / "baseline" / "seed=1" / "initial.pt", time.time() + 5
    )
    status = study_status(study)
    assert status.state == "stopped" and status.lock.alive is False
    assert all(item.running == [] for item in status.variants)
    assert status.totals()["pending"] == 5
    assert f"stopped: `ablate run` pid {owner.pid}" in status.format()
    folder = tmp_path / "study"
    hint = f"`ablate run {folder / 'grid.yaml'} --out {folder}` continues the study"
    assert f"is gone; {hint} (it takes the lock over)" in status.format()


def test_a_stopped_study_made_with_overrides_names_the_command_that_continues_it(
    tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The hint runs the stored grid.yaml, which holds the `--set`s: that is accepted, while
    the original file without them is refused (so "the same grid" would mislead)."""
    original = tmp_path / "original.yaml"
    grid = _grid([0, 1]).model_copy(update={"data": DataConfig(root=str(synthetic_root))})
    original.write_text(dump_grid(grid))
    stored = load_grid(original, ["protocol.seeds=[0, 1, 2]", "baseline.train.epochs=1"])
    study = StudyDir.open(tmp_path / "study")
    study.location.makedirs()
    study.write_grid(dump_grid(stored))
    study.write_dataset({"root": str(synthetic_root), "counts": {}, "dropped": []})
    study.results("handmade").write("runs", "baseline", 0, _runs_row("ok", 5.0, 5.0, None))

    assert main(["status", str(tmp_path / "study")]) == 0
    state = capsys.readouterr().out.splitlines()[1]
    command = re.fullmatch(
        r"state: stopped: runs are left; `ablate run (\S+) --out (\S+)` "
        r"continues the study",
        state,
    )
    assert command is not None, state
    prepared = prepare_study(command[1], command[2], resume=False)
    assert prepared.plan.finished == {("baseline", 0)} and prepared.plan.total == 9
    with pytest.raises(UserError, match="made from another grid"):
        prepare_study(str(original), command[2], resume=False)


def test_a_lock_held_from_another_machine_counts_as_running(tmp_path: Path) -> None:
    study = _study(tmp_path / "study", {}, seeds=1)
    owner = LockOwner(4242, "another-node.example", "2026-12-01 10:00:00")
    (tmp_path / "study" / LOCK_FILE).write_text(owner.to_json())
    status = study_status(study)
    assert status.state == "running" and status.lock.alive is None
    assert status.time_left_s is None  # no seed finished: nothing to estimate from
    text = status.format()
    assert "its process cannot be checked from here" in text
    assert "time left: unknown (no seed has finished yet)" in text


def test_status_reads_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = _study(tmp_path / "study", FAILURES, seeds=3)
    lock = StudyLock(study)
    lock.acquire()
    try:
        before = _files(tmp_path / "study")
        assert main(["status", str(tmp_path / "study")]) == 0
        assert main(["status", str(tmp_path / "study"), "--json"]) == 0
        assert _files(tmp_path / "study") == before  # the lock included: never taken
    finally:
        lock.release()
    assert "state: running" in capsys.readouterr().out


def test_summary_freshness(tmp_path: Path) -> None:
    study = _study(tmp_path / "study", {("baseline", 0): ("ok", 5.0, 5.0, None)}, seeds=1)
    assert study_status(study).summary == "missing"
    past = time.time() - 100
    for path in (tmp_path / "study").rglob("*"):
        os.utime(path, (past, past))
    study.write_summary({"report.html": b"<html></html>"})
    assert study_status(study).summary == "current"
    study.results("handmade").write("runs", "no-skips", 0, _runs_row("ok", 5.0, 5.0, None))
    future = time.time() + 100
    os.utime(
        tmp_path / "study" / "results" / "runs" / "variant=no-skips__seed=0.parquet",
        (future, future),
    )
    status = study_status(study)
    assert status.summary == "stale"
    assert "summary: out of date (runs finished after it was written)" in status.format()


def test_a_finished_study_behind_a_file_uri(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = {(v, s): ("ok", 2.0, 2.0 * s, None) for v in VARIANTS for s in (0, 1)}
    _study(tmp_path / "study", runs, seeds=2)
    assert main(["status", f"file://{tmp_path / 'study'}"]) == 0
    text = capsys.readouterr().out
    assert f"study handmade: file://{tmp_path / 'study'}" in text
    assert "state: finished: every expected run has a result" in text and "time left: none" in text


def test_a_folder_that_is_not_a_study_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "plain").mkdir()
    assert main(["status", str(tmp_path / "plain")]) == 2
    assert "not a study directory" in capsys.readouterr().err
    assert main(["status", str(tmp_path / "absent")]) == 2
    assert "study directory not found" in capsys.readouterr().err
    assert not (tmp_path / "absent").exists()


def test_time_left_simulates_trials_side_by_side() -> None:
    # Running chains hold their slots; waiting ones start in grid order as slots free up.
    assert time_left([(10, True), (5, True), (20, False), (3, False)], slots=2) == 25
    assert time_left([(10, True), (5, True), (20, False), (3, False)], slots=3) == 20
    assert time_left([(10, True), (0, False)], slots=1) == 10
    assert time_left([], slots=1) == 0


def test_expected_seeds_per_variant() -> None:
    assert expected_seeds(_grid([4, 7]).protocol).seeds == [4, 7]
    counted = GridConfig.model_validate({**_grid([0]).model_dump(), "protocol": {"seeds": 3}})
    assert expected_seeds(counted.protocol).seeds == [0, 1, 2]
    assert expected_seeds(counted.protocol).exact
    # Adaptive seeds (`protocol.seeds: {min, max}`, decided round by round) are not in the
    # config schema yet; a stand-in with that shape shows that only the maximum is known.
    adaptive = expected_seeds(SimpleNamespace(seeds={"min": 3, "max": 8}))
    assert adaptive.seeds == list(range(8)) and not adaptive.exact


@pytest.mark.ray
@pytest.mark.slow
def test_status_of_a_study_being_run_and_then_finished(
    grid_writer: Callable[..., Path],
    tmp_path: Path,
    synthetic_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    grid = grid_writer(
        tmp_path, synthetic_root, **{"protocol.seeds": [0, 1, 2, 3, 4], "baseline.train.epochs": 2}
    )
    folder = tmp_path / "out"
    command = [sys.executable, "-m", "ablate.cli", "run", str(grid), "--out", str(folder)]
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    child = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        study = StudyDir.open(folder)
        while True:  # until a seed has finished and another one runs (trials run two at once)
            assert child.poll() is None and time.monotonic() < deadline, "the study never ran"
            if (folder / LOCK_FILE).exists() and any((folder / "results" / "runs").glob("*")):
                status = study_status(study)
                if status.totals()["running"]:
                    break
            time.sleep(0.2)
        lock_text = (folder / LOCK_FILE).read_text()
        assert status.state == "running"
        assert (status.lock.pid, status.lock.alive) == (child.pid, True)
        totals = status.totals()
        assert totals["ok"] >= 1 and totals["failed"] == totals["diverged"] == 0
        assert totals["ok"] + totals["running"] + totals["pending"] == 10
        assert status.parallelism == totals["running"] and status.time_left_s is not None
        assert main(["status", str(folder), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["state"] in ("running", "finished")
        if child.poll() is None:
            assert (folder / LOCK_FILE).read_text() == lock_text  # still the command's lock
        output, _ = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
    assert child.returncode == 0, output
    status = study_status(StudyDir.open(folder))
    assert status.state == "finished" and status.lock is None
    assert status.totals() == {
        "expected": 10,
        "ok": 10,
        "failed": 0,
        "diverged": 0,
        "pending": 0,
        "running": 0,
    }
    assert status.summary == "current"
    assert all(item.mean_seed_s and item.mean_seed_s > 0 for item in status.variants)
