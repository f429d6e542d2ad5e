"""The bad-input catalogue (issues 9 and 14) and safety checks, through the real command line.

Every case runs `python -m ablate.cli ...` as a subprocess in a fresh folder that holds a
valid grid (`grid.yaml`) and a valid dataset (`good/`), then breaks one thing. The answer must
be exit 2, one `error: ...` message (a GridError may list its problems on indented lines below
it) that names the culprit, no traceback, nothing on stdout, and the folder byte-for-byte as it
was: a rejected command creates, changes and deletes nothing. `RAY_TMPDIR` and `ABLATE_CACHE`
point into that folder, so a command that started Ray or generated data would show up there.
Every child's peak memory is measured (`os.wait4`); the exhaustion cases (alias bomb, huge
file, a billion seeds, deep nesting, giant PNGs) must be answered within their time and
memory bounds, far below what the unbounded reading took (gigabytes, minutes).

Grid cases of issue 9 go through `ablate run`, the path a user takes; most of issue 14's go
through `ablate grid check` (the same loader, a faster process) with a few through `run` and
`train`, which must refuse them just the same. Dataset cases reuse the builders of
`tests/data/conftest.py`; a few go through `ablate run`, the others through `ablate data
check` (the same reader). Known product problems are `Case.problem`: strict xfails that name
the fault, so fixing one turns the suite red until its mark is removed.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ablate_testing import load_conftest

REPO = Path(__file__).resolve().parents[1]
EXIT_BAD_INPUT = 2
UNREACHABLE = "127.0.0.1:1"  # port 1: nothing listens, the connection is refused at once
FAST_S = 20.0
"""An unreachable address must be refused in seconds (Python start-up included), not after
Ray's minutes of retries."""


def _load_data_cases():
    """tests/data/conftest.py as a plain module: its EbhiBuilder and BAD_DATASETS table."""
    return load_conftest("data/conftest.py")


DATA_CASES = _load_data_cases()

GOOD_GRID = """\
study: catalogue
data:
  root: ${EBHI_SEG_ROOT}
protocol:
  seeds: 1
  test_fraction: 0.2
baseline:
  model:
    widths: [4, 8]
  train:
    lr: 0.001
    epochs: 1
    image_size: 32
    batch_size: 2
ablations:
  remove: [skips]
resources:
  cpu: 1
  gpu: 0
"""


@dataclass
class World:
    """The case's folder: a valid grid and dataset, and the environment of the command."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    sockets: list[socket.socket] = field(default_factory=list)
    """Listeners opened for the case; closed when it ends."""

    @property
    def grid(self) -> Path:
        return self.root / "grid.yaml"

    def edit_grid(self, old: str, new: str) -> None:
        """Replace one piece of the valid grid (it must be there)."""
        text = self.grid.read_text()
        assert old in text, f"{old!r} not in the grid"
        self.grid.write_text(text.replace(old, new, 1))

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def listener(self) -> int:
        """A local TCP port that accepts connections but is no Ray cluster."""
        server = socket.create_server(("127.0.0.1", 0))
        self.sockets.append(server)
        return server.getsockname()[1]

    def close(self) -> None:
        for server in self.sockets:
            server.close()

    def study_from(self, grid_text: str, folder: str = "study") -> Path:
        """A study directory as `ablate run` leaves it: grid.yaml from `ablate.grid.dump_grid`
        beside a dataset.json."""
        from ablate.grid import dump_grid, load_grid

        # The variable resolved here as `ablate run` resolves it (dump_grid writes values).
        resolved = grid_text.replace("${EBHI_SEG_ROOT}", self.env["EBHI_SEG_ROOT"])
        source = self.write(f"{folder}-source.yaml", resolved)
        study = self.root / folder
        study.mkdir()
        (study / "grid.yaml").write_text(dump_grid(load_grid(source)))
        (study / "dataset.json").write_text('{"counts": {}, "dropped": [], "categories": []}')
        source.unlink()
        return study


def make_world(root: Path) -> World:
    """A folder with grid.yaml (valid) and good/ (2 categories x 3 valid pairs)."""
    good = DATA_CASES.EbhiBuilder(root / "good").good()
    world = World(root)
    world.write("grid.yaml", GOOD_GRID)
    world.env = {
        "EBHI_SEG_ROOT": str(good),
        "ABLATE_CACHE": str(root / "cache"),  # absent: generated data would appear here
        "RAY_TMPDIR": str(root / "ray"),  # absent: a started Ray would leave its session here
    }
    return world


@dataclass(frozen=True)
class Case:
    """One bad input: how to make it, the command, and what the message must contain."""

    id: str
    build: Callable[[World], list[str]]
    """Breaks one thing in the world and returns the command's arguments."""
    culprit: tuple[str, ...]
    """Substrings the error message must contain: what is at fault, and what is wrong."""
    max_seconds: float = 120.0
    """No answer by then fails the case (the command is killed)."""
    max_rss_mb: float | None = None
    """Peak memory (RSS) the command may reach; None: not checked."""
    problem: str | None = None
    """A known product problem: the case is a strict xfail with this reason until fixed."""
    slow: bool = False
    unshown: tuple[str, ...] = ()
    """Substrings the answer must not contain: a secret, a file's content."""


def grid_case(case_id: str, edit: Callable[[World], None], *culprit: str) -> Case:
    """A grid made bad by `edit`, given to `ablate run`."""

    def build(world: World) -> list[str]:
        edit(world)
        return ["run", "grid.yaml", "--out", "study"]

    return Case(f"grid-{case_id}", build, ("grid.yaml", *culprit))


def _replace(old: str, new: str) -> Callable[[World], None]:
    return lambda world: world.edit_grid(old, new)


def _unset_variable(world: World) -> None:
    del world.env["EBHI_SEG_ROOT"]


EXHAUSTION_S = 30.0
"""Exhaustion cases: refused in seconds (Python start-up included, on a loaded machine)."""
GRID_MB = 300.0
"""Peak memory of a refused grid (`grid check` needs about 40 MB; the unbounded reading of
the alias bomb or of the billion seeds took over 2 GB)."""
DATA_MB = 400.0
"""Peak memory of a refused dataset (about 100 MB; six giant PNGs decoded took 3.7 GB)."""


def check_case(
    case_id: str,
    edit: Callable[[World], None],
    *culprit: str,
    command: tuple[str, ...] = ("grid", "check", "grid.yaml"),
    max_rss_mb: float | None = None,
    unshown: tuple[str, ...] = (),
) -> Case:
    """A grid made bad by `edit`, given to `ablate grid check` (or `command`)."""

    def build(world: World) -> list[str]:
        edit(world)
        return list(command)

    seconds = EXHAUSTION_S if max_rss_mb else 120.0
    return Case(
        f"grid-{case_id}", build, ("grid.yaml", *culprit), seconds, max_rss_mb, unshown=unshown
    )


RUN = ("run", "grid.yaml", "--out", "study")
TRAIN = ("train", "grid.yaml", "--seed", "0", "--out", "trained")


def _append(text: str) -> Callable[[World], None]:
    return lambda world: world.grid.write_text(world.grid.read_text() + text)


def _alias_bomb(world: World) -> None:
    """The issue's 524-byte bomb: nine levels of nine aliases, 9**9 leaves once expanded."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 9):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 9)}]")
    world.grid.write_text("\n".join(lines) + "\n" + world.grid.read_text())


def _big_grid(world: World) -> None:
    """A 3 MB grid: valid YAML (a huge comment), over the file size limit."""
    world.grid.write_text(world.grid.read_text() + "#" + "x" * (3 << 20) + "\n")


def _extends(reference: str) -> Callable[[World], None]:
    return lambda world: world.grid.write_text(f"extends: {reference}\n" + world.grid.read_text())


def _extends_symlink_out(world: World) -> None:
    """A relative symlink beside the grid, leading to a file outside its folder."""
    (world.root / "link.yaml").symlink_to(os.path.relpath("/etc/passwd", world.root))
    _extends("link.yaml")(world)


def _extends_fifo(world: World) -> None:
    os.mkfifo(world.root / "fifo.yaml")
    _extends("fifo.yaml")(world)


SECRET = "hunter2-secret"


def _variable_value_wrong(world: World) -> None:
    world.env["SECRETV"] = SECRET
    world.edit_grid("lr: 0.001", "lr: ${SECRETV}")


ISSUE_14_GRID_CASES = [
    # Resource exhaustion: refused within seconds and GRID_MB, naming the limit.
    check_case("alias-bomb", _alias_bomb, "line", "MAX_YAML_VALUES", max_rss_mb=GRID_MB),
    check_case("alias-bomb-run", _alias_bomb, "MAX_YAML_VALUES", command=RUN, max_rss_mb=GRID_MB),
    check_case("3-MB-file", _big_grid, "MAX_GRID_BYTES", max_rss_mb=GRID_MB),
    check_case(
        "billion-seeds",
        _replace("seeds: 1", "seeds: 1000000000"),
        "protocol.seeds (line 5)",
        "MAX_SEEDS",
        max_rss_mb=GRID_MB,
    ),
    check_case(
        "lists-600-deep",
        _append("x: " + "[" * 600 + "]" * 600 + "\n"),
        "line 20",
        "MAX_YAML_DEPTH",
        max_rss_mb=GRID_MB,
    ),
    # Accepted by `grid check` before, failing later in run or train.
    check_case(
        "root-nul", _replace("root: ${EBHI_SEG_ROOT}", 'root: "a\\0b"'), "data.root", "control"
    ),
    check_case(
        "root-nul-train",
        _replace("root: ${EBHI_SEG_ROOT}", 'root: "a\\0b"'),
        "data.root",
        "control",
        command=TRAIN,
    ),
    check_case("root-empty", _replace("root: ${EBHI_SEG_ROOT}", "root: ''"), "data.root", "empty"),
    check_case(
        "study-5000-characters",
        _replace("study: catalogue", "study: " + "s" * 5000),
        "study (line 1)",
        "over 100 characters",
        command=RUN,
    ),
    check_case(
        "cpu-inf-run", _replace("cpu: 1", "cpu: .inf"), "resources.cpu", "finite", command=RUN
    ),
    check_case(
        "gpu-inf-run", _replace("gpu: 0", "gpu: .inf"), "resources.gpu", "finite", command=RUN
    ),
    check_case("cpu-million", _replace("cpu: 1", "cpu: 1000000"), "resources.cpu", "1024"),
    check_case(
        "seed-1e23-run",
        _replace("seeds: 1", "seeds: [100000000000000000000000]"),
        "protocol.seeds",
        "outside 0..2147483647",
        command=RUN,
    ),
    check_case("seed-1e23", _replace("seeds: 1", "seeds: [1.0e+23]"), "protocol.seeds", "1e+23"),
    check_case("lr-inf", _replace("lr: 0.001", "lr: .inf"), "baseline.train.lr", "finite"),
    check_case(
        "weight-decay-inf",
        _replace("lr: 0.001", "lr: 0.001\n    weight_decay: .inf"),
        "baseline.train.weight_decay",
        "finite",
    ),
    check_case(
        "loss-0-times-dice",
        _replace("lr: 0.001", "lr: 0.001\n    loss: 0*dice"),
        "baseline.train.loss",
        "weight 0",
    ),
    check_case(
        "pruning-variants-unknown",
        _append("pruning:\n  variants: [no-skip]\n"),
        "pruning.variants[0] (line 21)",
        "no variant named 'no-skip'",
    ),
    check_case(
        "variant-name-final-newline",
        _replace("remove: [skips]", 'variants:\n    "tiny\\n": {lr: 0.01}'),
        "ablations.variants['tiny\\n']",
        "not safe as a file name",
    ),
    check_case("extends-a-folder", _extends("good"), "extends (line 1)", "is a folder"),
    check_case(
        "extends-absolute",
        _extends("/etc/hostname"),
        "extends (line 1)",
        "relative to this file's folder",
    ),
    check_case(
        "extends-symlink-out-of-the-folder",
        _extends_symlink_out,
        "extends (line 1)",
        "'link.yaml' leads out of this file's folder",
        unshown=("passwd", "root:"),
    ),
    check_case("extends-up-a-folder", _extends("../grid.yaml"), "extends (line 1)", "leads out of"),
    check_case("extends-a-fifo", _extends_fifo, "extends (line 1)", "'fifo.yaml' is not a file"),
    check_case(
        "set-extends",
        lambda world: None,
        "--set extends=other.yaml",
        "'extends' cannot be set with --set",
        command=("grid", "check", "grid.yaml", "--set", "extends=other.yaml"),
        unshown=("did you mean",),
    ),
    # Booleans where a number is expected: lax validation read `true` as 1.
    check_case(
        "epochs-true",
        _replace("epochs: 1", "epochs: true"),
        "baseline.train.epochs (line 12)",
        "must be a number, got the boolean true",
    ),
    check_case(
        "lr-true", _replace("lr: 0.001", "lr: true"), "baseline.train.lr (line 11)", "boolean"
    ),
    check_case(
        "seeds-list-true",
        _replace("seeds: 1", "seeds: [true]"),
        "protocol.seeds[0] (line 5)",
        "must be a number",
    ),
    check_case(
        "swap-lr-true",
        _replace("remove: [skips]", "swap: {lr: [true]}"),
        "ablations.swap.lr[0] (line 16)",
        "must be a number",
        unshown=("lr=1.0",),
    ),
    # The environment is never echoed: the value is named by its variable.
    check_case(
        "variable-value-not-echoed",
        _variable_value_wrong,
        "baseline.train.lr (line 11)",
        "(got the value of ${SECRETV})",
        unshown=(SECRET,),
    ),
]

GRID_CASES = [
    grid_case(
        "control-character-in-a-comment",
        _replace("    epochs: 1\n", "    epochs: 1  # bell \x07\n"),
        "character U+0007 is not allowed",
    ),
    grid_case(
        "nul-in-a-value",
        _replace("lr: 0.001", "lr: 0.0\x0001"),
        "character U+0000 is not allowed",
    ),
    grid_case(
        "unknown-key",
        _replace("    epochs: 1\n", "    epochs: 1\n    epoch: 3\n"),
        "baseline.train.epoch ",
        "did you mean 'epochs'",
    ),
    grid_case("wrong-type", _replace("lr: 0.001", "lr: fast"), "baseline.train.lr", "number"),
    grid_case(
        "out-of-range",
        _replace("test_fraction: 0.2", "test_fraction: 1.2"),
        "protocol.test_fraction",
        "less than 1",
    ),
    grid_case(
        "unknown-component",
        _replace("remove: [skips]", "remove: [batchnorm]"),
        "ablations.remove[0]",
        "unknown component 'batchnorm'",
    ),
    grid_case(
        "duplicate-variant",
        _replace("remove: [skips]", "swap:\n    norm: [none, none]"),
        "ablations.swap.norm[1]",
        "duplicate variant",
    ),
    grid_case(
        "yaml-syntax-error",
        _replace("remove: [skips]", "remove: [skips"),
        "YAML syntax error",
    ),
    grid_case("unset-variable", _unset_variable, "data.root", "EBHI_SEG_ROOT is not set"),
    grid_case(
        "missing-extends",
        _replace("study: catalogue\n", "extends: base.yaml\nstudy: catalogue\n"),
        "extends",
        "'base.yaml' not found",
    ),
    grid_case(
        "repeated-key",
        _replace("study: catalogue\n", "study: catalogue\nstudy: again\n"),
        "study (line 2)",
        "key repeated",
    ),
]


DATA_VIA_RUN = {
    "missing-root",
    "corrupt-png",
    "one-pair-per-category",
    "huge-images",
    "category-named-macro",
    "masks-0-1-among-0-255",
    "category-name-not-utf8",
}
"""Dataset cases also given to `ablate run`; the others go to `ablate data check`."""


def dataset_case(bad, via_run: bool) -> Case:
    """A bad dataset of tests/data/conftest.py, given to `ablate run` through EBHI_SEG_ROOT
    or to `ablate data check` directly."""

    def build(world: World) -> list[str]:
        root = bad.build(DATA_CASES.EbhiBuilder(world.root / "ebhi"))
        world.env["EBHI_SEG_ROOT"] = str(root)
        return ["run", "grid.yaml", "--out", "study"] if via_run else ["data", "check", str(root)]

    exhaustion = bad.id == "huge-images"
    # Through run, the message names the grid file and key that point at the dataset first.
    named = ("grid.yaml: data.root",) if via_run else ()
    return Case(
        f"data-{bad.id}{'-run' if via_run else ''}",
        build,
        (*named, bad.culprit, bad.says),
        EXHAUSTION_S if exhaustion else 120.0,
        DATA_MB if exhaustion else None,
    )


DATASET_CASES = [
    dataset_case(bad, via_run)
    for bad in DATA_CASES.BAD_DATASETS
    for via_run in ((False, True) if bad.id == "huge-images" else (bad.id in DATA_VIA_RUN,))
]


def _args(*args: str) -> Callable[[World], list[str]]:
    return lambda world: list(args)


def _address_not_ray(world: World) -> list[str]:
    return ["run", "grid.yaml", "--out", "study", "--address", f"127.0.0.1:{world.listener()}"]


def _broken_study_grid(world: World) -> list[str]:
    study = world.study_from(GOOD_GRID)
    (study / "grid.yaml").write_text("study: [catalogue\n")  # hand-edited, now unreadable
    return ["run", "grid.yaml", "--out", "study"]


def _grid_not_utf8(world: World) -> list[str]:
    world.grid.write_bytes(b"\xff\xfe study")
    return ["run", "grid.yaml"]


def _prune_without_runs(world: World) -> list[str]:
    world.study_from(GOOD_GRID)
    return ["prune", "study"]


def _another_grid(world: World) -> list[str]:
    # The same study with another baseline learning rate: continuing would mix two studies.
    world.study_from(GOOD_GRID.replace("lr: 0.001", "lr: 0.01"))
    return ["run", "grid.yaml", "--out", "study"]


def _another_grid_resume(world: World) -> list[str]:
    world.study_from(GOOD_GRID.replace("widths: [4, 8]", "widths: [4, 8, 16]"))
    return ["run", "grid.yaml", "--out", "study", "--resume"]


def _ray_address_env(world: World) -> list[str]:
    world.env["RAY_ADDRESS"] = UNREACHABLE
    return ["run", "grid.yaml", "--out", "study"]


def _out_is_a_file(world: World) -> list[str]:
    world.write("notes.txt", "not a study\n")
    return ["run", "grid.yaml", "--out", "notes.txt"]


def _prune_unknown_method(world: World) -> list[str]:
    world.study_from(GOOD_GRID)
    return ["prune", "study", "--methods", "magic"]


def _prune_amount_out_of_range(world: World) -> list[str]:
    world.study_from(GOOD_GRID)
    return ["prune", "study", "--amounts", "0.5,1.5"]


def _trial_bigger_than_this_machine(world: World) -> list[str]:
    # Known before a local Ray starts: refused in seconds, nothing written.
    world.edit_grid("cpu: 1", "cpu: 1024")
    return ["run", "grid.yaml", "--out", "study"]


def _summarize_empty_study(world: World) -> list[str]:
    (world.root / "study").mkdir()
    return ["summarize", "study"]


def _synth_into_dataset(world: World) -> list[str]:
    return ["data", "synth", "good", "--per-class", "1", "--size", "32"]


COMMAND_CASES = [
    Case("cli-unknown-subcommand", _args("frobnicate"), ("frobnicate", "invalid choice")),
    Case("cli-unknown-option", _args("run", "grid.yaml", "--adress", "x"), ("--adress",)),
    Case("cli-missing-grid-file", _args("run", "nope.yaml"), ("nope.yaml", "file not found")),
    Case(
        "cli-unreachable-address",
        _args("run", "grid.yaml", "--out", "study", "--address", UNREACHABLE),
        (UNREACHABLE, "no Ray cluster reachable"),
        max_seconds=FAST_S,
    ),
    Case(
        "cli-unreachable-ray-client-address",
        _args("run", "grid.yaml", "--out", "study", "--address", f"ray://{UNREACHABLE}"),
        (f"ray://{UNREACHABLE}", "no Ray cluster reachable"),
        max_seconds=FAST_S,
    ),
    Case(
        "cli-unreachable-RAY_ADDRESS",
        _ray_address_env,
        (UNREACHABLE, "no Ray cluster reachable"),
        max_seconds=FAST_S,
    ),
    Case(
        "cli-unreachable-RAY_ADDRESS-named",
        _ray_address_env,
        ("RAY_ADDRESS", UNREACHABLE),
        max_seconds=FAST_S,
    ),
    # No `--address auto` case: `auto` joins any Ray running on the machine (the suite's own
    # session-wide instance included), so "no cluster" cannot be arranged reliably here.
    Case(
        "cli-address-port-not-a-number",
        _args("run", "grid.yaml", "--out", "study", "--address", "localhost:notaport"),
        ("localhost:notaport", "port"),
        max_seconds=FAST_S,
    ),
    Case(
        "cli-address-not-a-ray-cluster",
        _address_not_ray,
        ("--address 127.0.0.1:", "no Ray cluster answered", "does not speak gRPC"),
        max_seconds=FAST_S,
    ),
    Case(
        "cli-study-from-another-grid",
        _another_grid,
        ("study", "another grid", "baseline.train.lr"),
    ),
    Case(
        "cli-resume-study-from-another-grid",
        _another_grid_resume,
        ("study", "another grid", "baseline.model.widths"),
    ),
    Case(
        "cli-study-grid-yaml-unreadable",
        _broken_study_grid,
        ("study/grid.yaml", "not a grid ablate stored"),
    ),
    Case("cli-grid-not-utf8", _grid_not_utf8, ("grid.yaml", "cannot read the file")),
    Case(
        "cli-set-control-character",
        _args("grid", "check", "grid.yaml", "--set", "baseline.train.loss=dice\x01"),
        ("--set", "character U+0001 is not allowed"),
    ),
    Case("cli-prune-without-runs", _prune_without_runs, ("study", "no completed runs")),
    Case("cli-out-is-a-file", _out_is_a_file, ("notes.txt",)),
    Case(
        "cli-max-concurrent-zero",
        _args("run", "grid.yaml", "--max-concurrent", "0"),
        ("--max-concurrent",),
    ),
    Case("cli-summarize-missing-dir", _args("summarize", "nowhere"), ("nowhere",)),
    Case("cli-summarize-empty-study", _summarize_empty_study, ("study",)),
    Case("cli-prune-missing-dir", _args("prune", "nowhere"), ("nowhere", "not found")),
    Case("cli-prune-unknown-method", _prune_unknown_method, ("--methods", "'magic'", "valid:")),
    Case("cli-prune-amount-out-of-range", _prune_amount_out_of_range, ("--amounts", "1.5")),
    Case(
        "cli-train-unknown-variant",
        _args("train", "grid.yaml", "--seed", "0", "--variant", "no-such"),
        ("grid.yaml", "'no-such'", "variants: baseline, no-skips"),
    ),
    Case(
        "cli-train-seed-beyond-the-limit",
        _args("train", "grid.yaml", "--seed", str(2**31)),
        (f"seed {2**31}:", "0 to 2147483647"),
    ),
    Case(
        "cli-trials-bigger-than-this-machine",
        _trial_bigger_than_this_machine,
        ("resources.cpu is 1024 per trial but this machine has",),
        max_seconds=FAST_S,
    ),
    Case("cli-data-check-missing-root", _args("data", "check", "nowhere"), ("nowhere",)),
    Case("cli-data-synth-into-non-empty", _synth_into_dataset, ("good", "not empty")),
    Case("cli-grid-check-a-folder", _args("grid", "check", "good"), ("good", "not a file")),
]

CATALOGUE = GRID_CASES + ISSUE_14_GRID_CASES + DATASET_CASES + COMMAND_CASES


def as_param(case: Case):
    """The case as a pytest parameter: known problems are strict xfails, so fixing one
    turns the suite red until its mark is removed."""
    marks = [pytest.mark.slow] if case.slow else []
    if case.problem:
        marks.append(pytest.mark.xfail(strict=True, reason=case.problem))
    return pytest.param(case, id=case.id, marks=marks)


@dataclass(frozen=True)
class Answer:
    code: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float
    """The child's peak resident memory (its own, from os.wait4)."""


CLI = ("-m", "ablate.cli")


def run_cli(
    args: list[str],
    cwd: Path,
    env: dict[str, str],
    timeout: float = 300.0,
    entry: tuple[str, ...] = CLI,
) -> Answer:
    """`python -m ablate.cli ARGS` in `cwd`; RAY_ADDRESS and test hooks of the caller removed.

    The child's peak memory is its VmHWM (the kernel's high-water mark of the process's
    resident memory since its exec), read from /proc while it runs: getrusage's ru_maxrss
    would also count the copy of this test process that the fork made before the exec,
    which is several hundred MB once the suite has imported torch and Ray.
    """
    base = {
        key: value
        for key, value in os.environ.items()
        if key not in ("RAY_ADDRESS", "EBHI_SEG_ROOT", "ABLATE_TEST_CRASH_FLAG")
    }
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        began = time.monotonic()
        child = subprocess.Popen(
            [sys.executable, *entry, *args], cwd=cwd, env={**base, **env}, stdout=out, stderr=err
        )
        status, peak_kib = _reap(child, timeout, args)
        seconds = time.monotonic() - began
        out.seek(0)
        err.seek(0)
        stdout, stderr = (stream.read().decode(errors="replace") for stream in (out, err))
    return Answer(status, stdout, stderr, seconds, peak_kib / 1024)


def _high_water_kib(pid: int) -> int:
    """VmHWM of a running process in KiB; 0 once it has exited (no memory left to read)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reap(child: subprocess.Popen, timeout: float, args: list[str]) -> tuple[int, int]:
    """(exit code, peak resident KiB) of `child`, polled every 10 ms (the high-water mark
    only grows, so a read after a peak still sees it); killed and failed after `timeout`."""
    deadline = time.monotonic() + timeout
    peak = 0
    while True:
        peak = max(peak, _high_water_kib(child.pid))
        pid, status = os.waitpid(child.pid, os.WNOHANG)
        if pid:
            child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
            return child.returncode, peak
        if time.monotonic() > deadline:
            child.kill()
            os.waitpid(child.pid, 0)
            child.returncode = -9
            pytest.fail(f"ablate {' '.join(args)[:200]}: no answer within {timeout:.0f} s (killed)")
        time.sleep(0.01)


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder`: kind, content hash, mode and modification time."""
    entries = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        entries[str(path.relative_to(folder))] = (info.st_mode, info.st_mtime_ns, digest)
    return entries


def assert_one_clear_message(answer: Answer, culprit: tuple[str, ...]) -> None:
    """Exit 2, stderr one `error:` message naming the culprit, nothing else said."""
    shown = f"exit {answer.code}\n--- stdout\n{answer.stdout}--- stderr\n{answer.stderr}"
    assert "Traceback" not in answer.stdout + answer.stderr, shown
    assert answer.code == EXIT_BAD_INPUT, shown
    lines = answer.stderr.rstrip("\n").splitlines()
    assert lines and lines[0].startswith("error: "), shown
    # A GridError lists its problems below the first line, each indented.
    assert all(line.startswith("  ") for line in lines[1:]), shown
    assert answer.stdout == "", shown
    for word in culprit:
        assert word in answer.stderr, f"{word!r} not named\n{shown}"


@pytest.mark.parametrize("case", [as_param(case) for case in CATALOGUE])
def test_bad_input_is_answered_with_exit_2_and_changes_nothing(tmp_path: Path, case: Case) -> None:
    world = make_world(tmp_path)
    try:
        args = case.build(world)
        before = snapshot(tmp_path)
        answer = run_cli(args, tmp_path, world.env, timeout=case.max_seconds)
    finally:
        world.close()
    assert_one_clear_message(answer, case.culprit)
    for text in case.unshown:
        assert text not in answer.stdout + answer.stderr, f"{text!r} shown\n{answer.stderr}"
    assert snapshot(tmp_path) == before, "a rejected command changed the folder"
    assert answer.seconds < case.max_seconds, f"took {answer.seconds:.1f} s"
    if case.max_rss_mb is not None:
        assert answer.peak_rss_mb < case.max_rss_mb, f"peak memory {answer.peak_rss_mb:.0f} MB"


def test_catalogue_is_large_and_spans_every_kind() -> None:
    kinds = {case.id.split("-", 1)[0] for case in CATALOGUE}
    assert len(CATALOGUE) >= 20 and kinds == {"grid", "data", "cli"}
    assert len({case.id for case in CATALOGUE}) == len(CATALOGUE)


def test_unbroken_world_is_accepted(tmp_path: Path) -> None:
    """The control: without the one defect, the grid and the dataset are valid, so each case
    above is refused for its own defect only."""
    world = make_world(tmp_path)
    for args in (["grid", "check", "grid.yaml"], ["data", "check", world.env["EBHI_SEG_ROOT"]]):
        answer = run_cli(args, tmp_path, world.env)
        assert answer.code == 0, answer.stderr
        assert answer.stderr == ""


# --- Read right now, where they were silently wrong (issue 14) -------------------------------


def _masks_0_1(builder) -> None:
    for category in ("Normal", "Polyp"):
        for index in range(2):
            builder.pair(category, f"p{index}.png", mask=builder.mask(value=1))


def _palette_dark_foreground(builder) -> None:
    for category in ("Normal", "Polyp"):
        for index in range(2):
            builder.png(f"{category}/image/p{index}.png", builder.rgb(index))
            indices = builder.mask(value=1)
            builder.palette_png(f"{category}/label/p{index}.png", indices, [(0, 0, 0), (90, 0, 0)])


@pytest.mark.parametrize(
    ("build", "encoding"),
    [
        (_masks_0_1, "masks: values 0/1, foreground 1"),
        (_palette_dark_foreground, "masks: palette indices, foreground any index but 0"),
    ],
    ids=["masks-0-1", "palette-dark-foreground"],
)
def test_mask_encodings_are_recognised_not_read_as_empty(tmp_path: Path, build, encoding) -> None:
    """Before, `> 127` made these masks all background and `data check` said nothing."""
    builder = DATA_CASES.EbhiBuilder(tmp_path / "ebhi")
    build(builder)
    answer = run_cli(["data", "check", str(builder.root)], tmp_path, {})
    assert answer.code == 0 and answer.stderr == "", answer.stderr
    assert encoding in answer.stdout
    assert re.search(r"  Normal +2 +50\.0%", answer.stdout), answer.stdout
    assert "dropped: none" in answer.stdout


def _write_study(folder: Path, categories: list[str]) -> Path:
    """A finished study as `ablate run` leaves it: grid.yaml, dataset.json and real Parquet
    runs and class_metrics files written through the store (2 variants x 2 seeds)."""
    import json

    import pandas as pd

    from ablate.config import GridConfig
    from ablate.grid import dump_grid
    from ablate.store import ResultStore

    grid = GridConfig(
        study="escaping",
        data={"root": "/data"},
        protocol={"seeds": 2},
        baseline={"model": {"widths": [4, 8]}, "train": {"image_size": 32}},
        ablations={"remove": ["skips"]},
    )
    folder.mkdir()
    (folder / "grid.yaml").write_text(dump_grid(grid))
    dataset = {"root": "/data", "counts": dict.fromkeys(categories, 4), "dropped": []}
    (folder / "dataset.json").write_text(json.dumps({**dataset, "categories": categories}))
    store = ResultStore(str(folder), study="escaping")
    config = grid.run_config().model_dump_json()
    for variant, gain in (("baseline", 10), ("no-skips", 0)):
        for seed in (0, 1):
            counts = [
                {"category": name, "tp": 50 + gain + 5 * seed + 3 * i, "fp": 5, "fn": 5, "tn": 99}
                for i, name in enumerate(categories)
            ]
            store.write("class_metrics", variant, seed, pd.DataFrame(counts))
            run = {"status": "ok", "error": None, "epochs": 1, "best_epoch": 1, "config": config}
            store.write("runs", variant, seed, pd.DataFrame([run]))
    return folder


def test_markup_in_a_category_name_is_escaped_in_the_markdown_tables(tmp_path: Path) -> None:
    """A category folder may be named `<svg onload=alert(1)>`: the .md tables show it as
    text (report.html was already escaped)."""
    hostile = "<svg onload=alert(1)> [x](javascript:alert(1))"
    study = _write_study(tmp_path / "study", ["Normal", hostile])
    answer = run_cli(["summarize", "study"], tmp_path, {"ABLATE_CACHE": str(tmp_path / "cache")})
    assert answer.code == 0, answer.stderr
    tables = sorted((study / "summary").glob("*.md"))
    assert tables
    for table in tables:
        text = table.read_text()
        assert "<svg" not in text, table.name
        assert not re.search(r"(?<!\\)\]\(", text), f"{table.name}: a live Markdown link"
    dice = (study / "summary" / "deltas_dice.md").read_text()
    assert "&lt;svg onload=alert(1)&gt; \\[x\\](javascript:alert(1))" in dice


# --- Unexpected failures: one line and a crash log, never a raw traceback (issue 14) ---------

SECRET = "ablate-test-secret-value"
INJECTED = (
    "-c",
    "import sys, ablate.grid.commands as commands\n"
    "def broken(grids, overrides=()):\n"
    "    raise {error}\n"
    "commands.grid_check = broken\n"
    "from ablate.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n",
)


def _injected(error: str) -> tuple[str, ...]:
    """`python -c` running the real CLI entry point, with `grid check` replaced by a function
    that raises `error`: the stand-in for a bug, since no known input reaches one."""
    return (INJECTED[0], INJECTED[1].format(error=error))


def test_unexpected_failure_prints_one_line_and_saves_a_crash_log(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    before = snapshot(tmp_path)
    env = {**world.env, "ABLATE_TEST_SECRET": SECRET}
    error = 'ZeroDivisionError("division by zero\\nsecond line")'
    answer = run_cli(["grid", "check", "grid.yaml"], tmp_path, env, entry=_injected(error))
    assert answer.code == 1, answer.stderr
    assert "Traceback" not in answer.stderr and answer.stdout == ""
    lines = answer.stderr.splitlines()
    assert len(lines) == 1, answer.stderr
    assert lines[0].startswith(
        "error: 'ablate grid check' failed unexpectedly (ZeroDivisionError: division by zero); "
        "full traceback in "
    )
    log = Path(lines[0].rsplit(" in ", 1)[1])
    assert log.parent == tmp_path / "cache" / "crash" and log.name.endswith("-grid-check.log")
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "in broken" in text
    assert "command: ablate grid check grid.yaml" in text
    assert SECRET not in text and "ABLATE_TEST_SECRET" not in text  # never the environment
    after = {key: value for key, value in snapshot(tmp_path).items() if "cache" not in key}
    assert after == before  # only the crash log was written


def test_interrupt_still_exits_130(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    answer = run_cli(
        ["grid", "check", "grid.yaml"], tmp_path, world.env, entry=_injected("KeyboardInterrupt")
    )
    assert answer.code == 130 and answer.stderr == "interrupted\n"
    assert not (tmp_path / "cache").exists()


# --- Safety: grids are data, checkpoints are weights only -------------------------------------

PYTHON_TAG = '!!python/object/apply:os.system ["touch {marker}"]'


@pytest.mark.parametrize("command", [["grid", "check"], ["run"]], ids=["grid-check", "run"])
@pytest.mark.parametrize("key", ["study", "baseline.train.lr"])
def test_grid_value_is_never_executed(tmp_path: Path, command: list[str], key: str) -> None:
    world = make_world(tmp_path)
    marker = tmp_path / "pwned"
    tag = PYTHON_TAG.format(marker=marker)
    old = {"study": "study: catalogue", "baseline.train.lr": "lr: 0.001"}[key]
    world.edit_grid(old, f"{old.split(':')[0]}: {tag}")
    before = snapshot(tmp_path)
    answer = run_cli([*command, "grid.yaml"], tmp_path, world.env)
    assert not marker.exists(), "a grid value was executed"
    assert_one_clear_message(answer, ("grid.yaml", "python/object/apply:os.system"))
    assert snapshot(tmp_path) == before


def _torch_load_calls(tree: ast.AST) -> list[ast.Call]:
    """Calls of `torch.load(...)`, and of `load(...)` where `from torch import load`."""
    imported = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "torch"
        and any(alias.name == "load" for alias in node.names)
        for node in ast.walk(tree)
    )
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "load"
            and isinstance(func.value, ast.Name)
            and func.value.id == "torch"
        ) or (imported and isinstance(func, ast.Name) and func.id == "load"):
            calls.append(node)
    return calls


def _weights_only(call: ast.Call) -> bool:
    return any(
        keyword.arg == "weights_only"
        and isinstance(keyword.value, ast.Constant)
        and keyword.value.value is True
        for keyword in call.keywords
    )


def test_every_torch_load_is_weights_only() -> None:
    calls = {}
    for path in sorted((REPO / "ablate").rglob("*.py")):
        for call in _torch_load_calls(ast.parse(path.read_text(), str(path))):
            calls[f"{path.relative_to(REPO)}:{call.lineno}"] = _weights_only(call)
    assert calls, "no torch.load call found: the scan is broken"
    unsafe = [where for where, safe in calls.items() if not safe]
    assert not unsafe, f"torch.load without weights_only=True at {unsafe}"


UNSAFE = {
    "YAML loader that builds objects": r"\byaml\.(load|unsafe_load|full_load)\(",
    "unpickling": r"\bpickle\.loads?\(",
    "evaluated text": r"(?<![\w.])(eval|exec)\(",
    "permissions other than the user's (umask)": r"\bos\.(chmod|umask)\(|0o777",
}


@pytest.mark.parametrize("what", list(UNSAFE))
def test_no_unsafe_loading_or_permissions(what: str) -> None:
    """Grids are read with the safe loader only, nothing is unpickled or evaluated, and study
    directories are created with the user's own permissions (no chmod, no umask change)."""
    pattern = re.compile(UNSAFE[what])
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in sorted((REPO / "ablate").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, f"{what}: {found}"


def test_the_memory_bound_measures_the_command_not_this_process(tmp_path: Path) -> None:
    # The bound must see a command's own peak (a 300 MB allocation is seen), and not the
    # memory of this test process, which the fork copies before the command starts.
    import torch  # noqa: F401  (the suite's process is large by now; make sure it is here)

    hungry = ("-c", "import time; block = bytearray(300 << 20); time.sleep(0.3)")
    answer = run_cli([], tmp_path, {}, timeout=60, entry=hungry)
    assert answer.code == 0 and answer.peak_rss_mb >= 300
    quiet = ("-c", "import time; time.sleep(0.3)")
    assert run_cli([], tmp_path, {}, timeout=60, entry=quiet).peak_rss_mb < 100
