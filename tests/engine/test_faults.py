"""Faults survived by `ablate run`: killed workers, a killed driver, locks, bad study dirs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from ablate.cli import main
from ablate.engine.commands import run_command
from ablate.engine.lock import LockOwner, StudyLock
from ablate.engine.run import run_grid
from ablate.errors import StudyIncomplete, UserError
from ablate.grid import dump_grid, load_grid
from ablate.store import StudyDir
from ablate.store.study import LOCK_FILE

ROW_KEYS = {
    "runs": [],
    "class_metrics": ["category"],
    "image_metrics": ["image", "class_name"],
    "history": ["epoch"],
}
"""Besides (variant, seed), what identifies a row of each table."""
LONGER_STUDY = {"protocol.seeds": [0, 1, 2, 3, 4], "baseline.train.epochs": 2}
"""For the tests that stop a running command: 10 runs, so it is still busy when stopped."""


def _ablate_run(grid: Path, study: Path, *options: str) -> list[str]:
    """The command line of `ablate run GRID --out STUDY [OPTIONS]` in a fresh interpreter."""
    return [sys.executable, "-m", "ablate.cli", "run", str(grid), "--out", str(study), *options]


def _assert_each_run_once(study: Path, pairs: set[tuple[str, int]]) -> None:
    for table, keys in ROW_KEYS.items():
        frame = pd.read_parquet(study / "results" / table)
        assert not frame.duplicated(["variant", "seed", *keys]).any(), f"{table}: duplicates"
        assert set(zip(frame["variant"], frame["seed"], strict=True)) == pairs, table


def test_lock_refuses_a_second_run_and_takes_over_a_dead_one(tmp_path: Path) -> None:
    study = StudyDir.open(tmp_path)
    in_use = rf"in use by another `ablate run` \(pid {os.getpid()}"
    with StudyLock(study), pytest.raises(UserError, match=in_use):
        StudyLock(study).acquire()
    assert not (tmp_path / LOCK_FILE).exists()
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = LockOwner(pid=int(finished.stdout), host=LockOwner.me().host, started_at="earlier")
    (tmp_path / LOCK_FILE).write_text(dead.to_json())
    with StudyLock(study) as lock:
        assert LockOwner.from_json((tmp_path / LOCK_FILE).read_text()) == lock.owner


def test_run_on_a_locked_study_is_refused(
    grid_writer: Callable[..., Path], tmp_path: Path, synthetic_root: Path
) -> None:
    grid = grid_writer(tmp_path, synthetic_root)
    study = tmp_path / "out"
    with StudyLock(StudyDir.open(study)), pytest.raises(UserError, match="in use"):
        run_command(str(grid), out=str(study))
    assert not (study / "results").exists()


def test_unwritable_study_dir_exits_2_before_training(
    grid_writer: Callable[..., Path],
    tmp_path: Path,
    synthetic_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    grid = grid_writer(tmp_path, synthetic_root)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    assert main(["run", str(grid), "--out", str(blocker / "study")]) == 2
    captured = capsys.readouterr()
    assert "cannot be written" in captured.err and "Traceback" not in captured.err
    assert "ray:" not in captured.out


@pytest.mark.ray
def test_killed_worker_is_retried_without_duplicates(
    grid_writer: Callable[..., Path],
    crash_once: Callable[[Path], Callable[..., None]],
    tmp_path: Path,
    synthetic_root: Path,
    capsys: pytest.CaptureFixture[str],
    ray_session: object,
) -> None:
    grid = grid_writer(tmp_path, synthetic_root, ablations=None, **{"protocol.seeds": [0, 1, 2]})
    flag = tmp_path / "crash-once"
    flag.write_text("")
    run_grid(str(grid), out=str(tmp_path / "out"), trainable=crash_once(flag))
    assert not flag.exists()  # the hook fired: a worker was SIGKILLed mid-seed
    assert "retrying" in capsys.readouterr().out
    study = tmp_path / "out"
    _assert_each_run_once(study, {("baseline", s) for s in (0, 1, 2)})
    runs = pd.read_parquet(study / "results" / "runs").set_index("seed")
    killed_at = pd.Timestamp(Path(f"{flag}.fired").read_text())
    # Seed 0 finished before the kill and was kept; seed 1, killed midway, was run again.
    assert runs.loc[0, "finished_at"] < killed_at < runs.loc[1, "started_at"]
    assert (runs["status"] == "ok").all()


@pytest.mark.ray
@pytest.mark.slow
def test_killed_command_then_rerun_completes_the_study(
    grid_writer: Callable[..., Path], tmp_path: Path, synthetic_root: Path, ray_session: object
) -> None:
    grid = grid_writer(tmp_path, synthetic_root, **LONGER_STUDY)
    study = tmp_path / "out"
    runs = study / "results" / "runs"
    command = _ablate_run(grid, study)
    child = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while not (runs.is_dir() and any(runs.glob("variant=*"))):
            assert child.poll() is None and time.monotonic() < deadline, "no run finished"
            time.sleep(0.2)
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
        # Ray processes the killed command started outlive it for a while; end them (they
        # are in the child's session) so they do not keep training next to the rerun.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
    finished = len(list(runs.glob("variant=*")))
    assert finished < 10, "the study finished before the kill; nothing was tested"
    assert (study / LOCK_FILE).exists()  # left behind by the killed run, taken over below
    run_command(str(grid), out=str(study))
    pairs = {(v, s) for v in ("baseline", "norm=none") for s in LONGER_STUDY["protocol.seeds"]}
    _assert_each_run_once(study, pairs)


def test_unreachable_address_exits_2_and_writes_nothing(
    grid_writer: Callable[..., Path], tmp_path: Path, synthetic_root: Path
) -> None:
    grid = grid_writer(tmp_path, synthetic_root)
    study = tmp_path / "out"
    command = _ablate_run(grid, study, "--address", "127.0.0.1:1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "--address 127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr
    assert not study.exists()


@pytest.mark.ray
def test_trial_failing_beyond_retries_exits_1_and_rerun_finishes(
    grid_writer: Callable[..., Path],
    crash_once: Callable[[Path], Callable[..., None]],
    tmp_path: Path,
    synthetic_root: Path,
    capsys: pytest.CaptureFixture[str],
    ray_session: object,
) -> None:
    changes = {"protocol.seeds": [0, 1], "resources.max_failures": 0}
    grid = grid_writer(tmp_path, synthetic_root, ablations=None, **changes)
    flag = tmp_path / "crash-once"
    flag.write_text("")
    # A typed error (the CLI's exit 1), carrying the study to continue.
    with pytest.raises(StudyIncomplete, match="1 run\\(s\\) unfinished") as caught:
        run_grid(str(grid), out=str(tmp_path / "out"), trainable=crash_once(flag))
    assert caught.value.study_uri == str(tmp_path / "out")
    captured = capsys.readouterr()
    assert "error: trial baseline failed" in captured.out
    assert "1 run(s) did not finish" in captured.err
    assert not (tmp_path / "out" / LOCK_FILE).exists()
    run_command(str(grid), out=str(tmp_path / "out"))
    assert "skipping 1 finished run(s); 1 to run" in capsys.readouterr().out
    _assert_each_run_once(tmp_path / "out", {("baseline", 0), ("baseline", 1)})


@pytest.mark.ray
@pytest.mark.slow
def test_second_run_refused_then_ctrl_c_stops_ray_and_frees_the_lock(
    grid_writer: Callable[..., Path], tmp_path: Path, synthetic_root: Path
) -> None:
    grid = grid_writer(tmp_path, synthetic_root, **LONGER_STUDY)
    study = tmp_path / "out"
    command = _ablate_run(grid, study)
    child = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not any((study / "results" / "runs").glob("variant=*")):
            assert child.poll() is None and time.monotonic() < deadline, "no run finished"
            time.sleep(0.2)
        # A second run on the same study is refused and leaves the first one alone.
        with pytest.raises(UserError, match=rf"in use by another `ablate run` \(pid {child.pid}"):
            run_command(str(grid), out=str(study))
        assert child.poll() is None
        assert LockOwner.from_json((study / LOCK_FILE).read_text()).pid == child.pid
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, stderr
    assert "interrupted" in stderr
    assert not (study / LOCK_FILE).exists()
    # ray.shutdown() ended the local instance: nothing of the command's session survives
    # (Ray's processes exit on their own within seconds; a loaded machine may take longer).
    assert _session_ends(child.pid, timeout=30), "Ray processes of the command outlived it"


def _session_ends(session: int, timeout: float) -> bool:
    """Whether every process of `session` (a process group) is gone within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(session, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.ray
def test_trials_larger_than_the_cluster_are_refused(
    grid_writer: Callable[..., Path], tmp_path: Path, synthetic_root: Path, ray_session: object
) -> None:
    grid = grid_writer(tmp_path, synthetic_root, **{"resources.cpu": 64})
    with pytest.raises(UserError, match=r"resources\.cpu is 64 per trial but the cluster has 2"):
        run_command(str(grid), out=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # the refused command created it, then removed it
    # An existing study is left as it was: nothing removed, no lock left.
    kept = StudyDir.open(tmp_path / "kept")
    kept.write_grid(dump_grid(load_grid(grid)))
    kept.write_dataset({"counts": {}, "dropped": [], "categories": []})
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"resources\.cpu is 64"):
        run_command(str(grid), out=str(tmp_path / "kept"))
    assert (tmp_path / "kept" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "kept" / LOCK_FILE).exists()


def test_empty_out_is_bad_input(
    grid_writer: Callable[..., Path], tmp_path: Path, synthetic_root: Path
) -> None:
    grid = grid_writer(tmp_path, synthetic_root)
    with pytest.raises(UserError, match="--out is empty"):
        run_command(str(grid), out=" ")
    assert not (tmp_path / "runs").exists() and not Path("runs", "tiny").exists()


@pytest.mark.ray
@pytest.mark.slow
def test_disk_filling_up_mid_study_stops_cleanly_and_the_rerun_completes(
    grid_writer: Callable[..., Path],
    tmp_path: Path,
    synthetic_root: Path,
    small_disk: Callable[[int], Path],
) -> None:
    # ~2 MiB checkpoints (initial.pt and best.pt per run): 17 MiB free holds a few runs only.
    grid = grid_writer(
        tmp_path,
        synthetic_root,
        **{"protocol.seeds": [0, 1, 2, 3, 4], "baseline.model.widths": [16, 32, 64, 128]},
    )
    disk = small_disk(96)
    ballast = disk / "ballast"
    ballast.write_bytes(b"\0" * (79 << 20))  # leaves 17 MiB: the start check passes
    study = disk / "study"
    command = _ablate_run(grid, study)
    full = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert full.returncode == 1, full.stdout[-3000:] + full.stderr
    assert "Traceback" not in full.stderr
    assert "No space left on device" in full.stderr or "is full" in full.stderr
    assert "run the same command again" in full.stderr
    assert not (study / LOCK_FILE).exists()
    stored = list((study / "results" / "runs").glob("*.parquet"))
    assert 0 < len(stored) < 10, "the disk did not fill up mid-study"
    ballast.unlink()  # space freed: the same command continues the study
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"skipping {len(stored)} finished run(s)" in again.stdout
    pairs = {(v, s) for v in ("baseline", "norm=none") for s in range(5)}
    _assert_each_run_once(study, pairs)
    runs = pd.read_parquet(study / "results" / "runs")
    assert (runs["status"] == "ok").all(), runs[["variant", "seed", "status", "error"]]


def test_a_trial_of_a_command_that_lost_the_study_leaves_it_alone(
    tmp_path: Path, synthetic_root: Path
) -> None:
    """A worker that outlived its `ablate run` must not delete or write the next command's runs."""
    from ablate.config import RunConfig
    from ablate.data.ebhi import load_ebhi
    from ablate.engine.trainable import StudyTakenOver, TrialSetup, run_seed

    config = RunConfig.model_validate(
        {
            "data": {"root": str(synthetic_root)},
            "model": {"widths": [4, 8]},
            "train": {"image_size": 32, "epochs": 1, "patience": None, "num_workers": 0},
        }
    )
    data = load_ebhi(synthetic_root)
    study = StudyDir.open(tmp_path / "study")
    next_command = LockOwner(pid=os.getpid(), host="here", started_at="later").to_json()
    study.location.write_text(next_command, LOCK_FILE)
    configs = {"baseline": config.model_dump_json()}
    ours = TrialSetup(study="tiny", study_uri=study.uri, run_configs=configs, seeds=[0])
    run_seed(study, replace(ours, lock=next_command), data, "baseline", 0)
    stored = {p: p.stat().st_mtime_ns for p in (tmp_path / "study" / "results").rglob("*.parquet")}
    assert len(stored) == 4  # runs, class_metrics, image_metrics, history
    stale = replace(ours, lock=LockOwner(pid=1, host="here", started_at="before").to_json())
    with pytest.raises(StudyTakenOver, match="no longer held by the command"):
        run_seed(study, stale, data, "baseline", 0)
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "study" / "results").rglob("*.parquet")}
    assert after == stored
    study.location.delete(LOCK_FILE)  # no lock at all: not ours either
    with pytest.raises(StudyTakenOver):
        run_seed(study, replace(ours, lock=next_command), data, "baseline", 0)
