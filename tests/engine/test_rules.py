"""Engine rules that need no Ray: resume compatibility, plans, addresses, messages."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from ablate.config import GridConfig
from ablate.engine.connection import _host_port, wait_for_exit
from ablate.engine.messages import format_duration, short_error
from ablate.engine.resume import Plan, changed_keys, check_compatible
from ablate.engine.run import _stop_if_disk_filled
from ablate.engine.study import default_study_dir
from ablate.errors import MachineError, UserError
from ablate.grid import expand_variants
from ablate.store import StudyDir

BASE: dict[str, Any] = {
    "study": "s",
    "data": {"root": "/data"},
    "protocol": {"seeds": 2},
    "baseline": {"model": {"widths": [4, 8]}},
    "ablations": {"swap": {"model.norm": ["none"]}},
}


def _grid(**changes: Any) -> GridConfig:
    raw = {key: dict(value) if isinstance(value, dict) else value for key, value in BASE.items()}
    raw.update(changes)
    return GridConfig.model_validate(raw)


def test_adding_seeds_variants_or_changing_resources_or_pruning_is_compatible() -> None:
    more = _grid(
        protocol={"seeds": [0, 1, 2]},
        ablations={"swap": {"model.norm": ["none", "instance"]}},
        resources={"cpu": 2, "max_concurrent": 1},
        pruning={"methods": ["random_structured"], "amounts": [0.3]},  # adds rows, loses none
    )
    check_compatible(_grid(), more, expand_variants(more), "study")


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"baseline": {"model": {"widths": [4, 16]}}}, "baseline.model.widths"),
        ({"data": {"root": "/other"}}, "data.root"),
        ({"protocol": {"seeds": 2, "test_fraction": 0.3}}, "protocol.test_fraction"),
        ({"protocol": {"seeds": [1]}}, "protocol.seeds (seeds [0] removed)"),
        ({"ablations": {}}, "variant 'norm=none' removed"),
        ({"study": "t"}, "study"),
    ],
)
def test_other_changes_are_refused_naming_the_key(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(UserError, match="made from another grid") as error:
        new = _grid(**changes)
        check_compatible(_grid(), new, expand_variants(new), "runs/s")
    assert named in str(error.value)


def test_the_refusal_states_every_change_that_continues_a_study() -> None:
    """The rule in the message matches the rule applied (resources, pruning and analysis may
    change too), and names no command-line option: `ablate.run` raises it as well."""
    new = _grid(study="t")
    with pytest.raises(UserError) as error:
        check_compatible(_grid(), new, expand_variants(new), "runs/s")
    message = str(error.value)
    rule = "only adds variants or seeds or changes resources, pruning or analysis"
    assert rule in message
    assert message.endswith("restore those keys or use another study directory")
    assert "--out" not in message


ADAPTIVE = {"seeds": {"min": 3, "max": 6}}


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (ADAPTIVE, {"seeds": {"min": 3, "max": 10}}),  # raising max grows the study
        ({"seeds": 3}, ADAPTIVE),  # three fixed seeds are the adaptive study's first round
        ({"seeds": [0, 1, 2]}, ADAPTIVE),
        ({"seeds": 3}, {"seeds": {"min": 3, "max": 6, "futility": False}}),
        (
            {"seeds": {"min": 3, "max": 6, "futility": False}},
            {"seeds": {"min": 3, "max": 9, "futility": False}},
        ),
    ],
    ids=["raise-max", "count-to-adaptive", "list-to-adaptive", "to-literal", "raise-max-literal"],
)
def test_adaptive_seeds_grow_by_their_max(before: dict, after: dict) -> None:
    old, new = _grid(protocol=before), _grid(protocol=after)
    check_compatible(old, new, expand_variants(new), "study")


@pytest.mark.parametrize(
    ("before", "after", "named"),
    [
        (ADAPTIVE, {"seeds": {"min": 3, "max": 5}}, "protocol.seeds (seeds [5] removed)"),
        (ADAPTIVE, {"seeds": {"min": 2, "max": 6}}, "protocol.seeds.min (3 -> 2"),
        (ADAPTIVE, {"seeds": {"min": 4, "max": 6}}, "protocol.seeds.min (3 -> 4"),
        (ADAPTIVE, {"seeds": 6}, "adaptive seeds made fixed"),
        (
            ADAPTIVE,
            {"seeds": {"min": 3, "max": 6, "futility": False}},
            "protocol.seeds.futility (True -> False",
        ),
        (
            {"seeds": {"min": 3, "max": 6, "futility": False}},
            {"seeds": {"min": 3, "max": 8}},
            "protocol.seeds.futility (False -> True",
        ),
        ({"seeds": 5}, ADAPTIVE, "must be the first round, seeds 0..2"),
        ({"seeds": 2}, {"seeds": 2, "vary": {"split": False}}, "protocol.vary.split"),
        ({"seeds": 2}, {"seeds": 2, "vary": {"init": False}}, "protocol.vary.init"),
    ],
    ids=[
        "lower-max",
        "lower-min",
        "raise-min",
        "make-fixed",
        "futility-off",
        "futility-on",
        "fixed-not-a-round",
        "vary",
        "init",
    ],
)
def test_seed_and_vary_changes_that_would_mix_studies_are_refused(
    before: dict, after: dict, named: str
) -> None:
    old, new = _grid(protocol=before), _grid(protocol=after)
    with pytest.raises(UserError, match="made from another grid") as error:
        check_compatible(old, new, expand_variants(new), "runs/s")
    assert named in str(error.value)


def test_analysis_may_change_between_runs_of_a_study() -> None:
    """Margin, alpha and metric change how the summary reads the runs, not the runs."""
    new = _grid(analysis={"metric": "iou", "margin": 0.05, "alpha": 0.1})
    assert changed_keys(_grid(), new) == []
    check_compatible(_grid(), new, expand_variants(new), "study")


def test_adaptive_plan_counts() -> None:
    plan = Plan(variants=["a", "b"], seeds=list(range(6)), finished=set(), min_seeds=3)
    assert plan.adaptive and (plan.fewest, plan.total) == (6, 12)
    assert not Plan(variants=["a"], seeds=[0, 1], finished=set()).adaptive


def test_changed_keys_ignores_resources() -> None:
    assert changed_keys(_grid(), _grid(resources={"cpu": 4})) == []


def test_plan_counts_and_pending() -> None:
    finished = {("a", 0), ("a", 1), ("b", 1), ("x", 0)}  # ("x", 0): a variant since removed
    plan = Plan(variants=["a", "b"], seeds=[0, 1], finished=finished)
    assert plan.total == 4 and plan.skipped == 3
    assert plan.pending() == {"b": [0]}


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.0.0.1:6379", ("10.0.0.1", 6379)),
        ("ray://head:10001", ("head", 10001)),
        ("ray://head", ("head", 10001)),
        ("auto", None),
        ("local", None),
    ],
)
def test_addresses_checked_before_joining(address: str, expected: tuple | None) -> None:
    assert _host_port(address, f"--address {address}") == expected


@pytest.mark.parametrize("address", ["head:notaport", "head:0", "head:70000"])
def test_a_port_that_is_not_a_port_is_bad_input(address: str) -> None:
    with pytest.raises(UserError, match=f"--address {address}: port"):
        _host_port(address, f"--address {address}")


def test_messages() -> None:
    assert format_duration(5) == "5s" and format_duration(95) == "1m35s"
    assert format_duration(3720) == "1h02m" and format_duration(float("nan")) == "?"
    ray_text = "Failure # 1\nThe actor died unexpectedly before finishing this task.\n..."
    assert "worker process died" in short_error(ray_text)
    assert short_error("Traceback\n  File x\nValueError: bad size") == "ValueError: bad size"


def test_grids_in_repo_resolve_a_default_study_dir() -> None:
    assert default_study_dir(_grid()) == str(Path("runs") / "s")


def test_trials_that_a_full_disk_stopped_stop_the_study(tmp_path: Path) -> None:
    study = StudyDir.open(tmp_path)
    _stop_if_disk_filled(study, {})  # nothing failed
    _stop_if_disk_filled(study, {"depth=3": "ValueError: bad shape"})  # not the disk
    filled = {"baseline": "OSError: [Errno 28] No space left on device", "depth=3": "ValueError"}
    with pytest.raises(MachineError, match=r"trial\(s\) stopped: baseline\)\. Finished runs"):
        _stop_if_disk_filled(study, filled)


def test_processes_still_there_after_the_wait_are_killed() -> None:
    quick = psutil.Popen([sys.executable, "-c", "pass"])
    stuck = psutil.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    began = time.monotonic()
    wait_for_exit([quick, stuck], timeout=1.0)
    assert time.monotonic() - began < 30
    assert quick.wait(0) == 0  # ended by itself
    assert stuck.wait(0) == -signal.SIGKILL
