"""`--set KEY=VALUE`: keys placed by the schema, applied after extends and ${VAR}, validated
like the file, and every malformed or invalid override refused naming it."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ablate.cli import main
from ablate.config import DataConfig, GridConfig, Recipe, RunConfig, SyntheticConfig
from ablate.errors import GridError, UserError
from ablate.grid import dump_grid, load_grid, load_grid_variants, runs_count

WriteGrid = Callable[..., Path]
REPO = Path(__file__).resolve().parents[2]


def _problems(grid: object, overrides: list[str]) -> str:
    with pytest.raises(GridError) as caught:
        load_grid(grid, overrides)
    return str(caught.value)


def test_overrides_change_values_and_run_counts(write_grid: WriteGrid, minimal: str) -> None:
    path = write_grid(minimal + "ablations:\n  remove: [norm]\n")
    assert runs_count(load_grid(path)) == 2 * 2
    grid, variants = load_grid_variants(
        path,
        [
            "protocol.seeds=[3, 5, 8]",
            "baseline.train.epochs=2",
            "resources.gpu=0.25",
            "ablations.swap.lr=[1e-4]",
            "baseline.train.patience=null",
        ],
    )
    assert grid.protocol.seed_list() == [3, 5, 8]
    assert grid.baseline.train.epochs == 2 and grid.baseline.train.patience is None
    assert grid.resources.gpu == 0.25
    assert [v.name for v in variants] == ["baseline", "no-norm", "lr=0.0001"]
    assert runs_count(grid) == 3 * 3
    assert runs_count(load_grid(path, ["protocol.seeds=1"])) == 2 * 1


def test_keys_of_free_mappings_keep_their_dots(write_grid: WriteGrid, minimal: str) -> None:
    # `ablations.swap` maps a key (here the dotted `train.weight_decay`) to values; a named
    # variant maps its own dotted keys; `augment.ops` maps op names to probabilities.
    grid, variants = load_grid_variants(
        write_grid(minimal),
        [
            "ablations.swap.train.weight_decay=[0.01]",
            "ablations.variants.tiny.model.widths=[4, 8, 16]",
            "ablations.variants.tiny.batch_size=4",
            "baseline.augment.ops.rotate=0.25",
            "baseline.augment.ops={hflip: 0.5}",
        ],
    )
    assert grid.ablations.swap == {"train.weight_decay": [0.01]}
    assert grid.ablations.variants == {"tiny": {"model.widths": [4, 8, 16], "batch_size": 4}}
    assert grid.baseline.augment.ops == {"hflip": 0.5}  # the later, whole mapping wins
    assert [v.name for v in variants] == ["baseline", "weight_decay=0.01", "tiny"]


def test_an_override_gives_the_grid_an_edited_file_gives(
    write_grid: WriteGrid, minimal: str
) -> None:
    """grid.yaml stores the resolved grid, so a study run with overrides is resumed or refused
    exactly as one run from the edited file (engine/resume.py compares those)."""
    path = write_grid(minimal)
    edited = write_grid(
        minimal.replace("seeds: 2", "seeds: 1").replace("epochs: 1", "epochs: 3"), "edited.yaml"
    )
    overridden = load_grid(path, ["protocol.seeds=1", "baseline.train.epochs=3"])
    assert dump_grid(overridden) == dump_grid(load_grid(edited))
    assert overridden == load_grid(edited)


def test_overrides_apply_after_extends_and_environment(
    write_grid: WriteGrid, minimal: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABLATE_TEST_ROOT", "/data/from-env")
    monkeypatch.delenv("ABLATE_TEST_UNSET", raising=False)
    write_grid(
        minimal.replace("  synthetic: {per_class: 4, size: 32}", "  root: ${ABLATE_TEST_ROOT}"),
        name="base.yaml",
    )
    child = write_grid("extends: base.yaml\nstudy: child\nbaseline:\n  train: {lr: 0.01}\n")
    assert load_grid(child).data.root == "/data/from-env"
    grid = load_grid(child, ["baseline.train.lr=0.5", "data.root=/data/${ABLATE_TEST_UNSET}"])
    assert grid.baseline.train.lr == 0.5  # over the child's own value
    assert grid.baseline.model.widths == [8, 16, 32]  # the rest still inherited
    assert grid.data.root == "/data/${ABLATE_TEST_UNSET}"  # taken as written, after ${VAR}


def test_single_run_configs_take_both_spellings(write_grid: WriteGrid) -> None:
    path = write_grid(
        "data:\n  synthetic: {per_class: 4, size: 32}\nmodel:\n  widths: [8, 16]\n"
        "train:\n  epochs: 1\n",
        name="run.yaml",
    )
    short = load_grid(path, ["train.epochs=3", "protocol.seeds=1"])
    long = load_grid(path, ["baseline.train.epochs=3", "protocol.seeds=1"])
    assert short == long and short.baseline.train.epochs == 3 and short.study == "run"
    message = _problems(path, ["train.epoch=3"])
    assert "train.epoch (--set train.epoch=3): unknown key 'epoch'" in message
    assert "did you mean 'epochs'" in message


def test_grids_and_run_configs_built_in_python_take_overrides() -> None:
    data = DataConfig(synthetic=SyntheticConfig(per_class=4, size=32))
    grid = GridConfig(study="py", data=data, baseline=Recipe(train={"epochs": 1}))
    assert load_grid(grid, ["protocol.seeds=1"]).protocol.seed_list() == [0]
    run = RunConfig(data=data, train={"epochs": 1})
    assert load_grid(run, ["train.epochs=2"]).baseline.train.epochs == 2
    message = _problems(grid, ["baseline.train.lr=-1"])
    assert message.startswith("grid 'py': 1 problem(s)")
    assert "baseline.train.lr (--set baseline.train.lr=-1): Input should be greater than 0" in (
        message
    )


MALFORMED = [
    ("protocol.seeds", "--set protocol.seeds: not KEY=VALUE (no '=')"),
    ("=3", "--set =3: the key before '=' is empty"),
    ("  =3", "the key before '=' is empty"),
    ("protocol..seeds=1", "--set protocol..seeds=1: the key 'protocol..seeds' has an empty part"),
    ("protocol.seeds.=1", "has an empty part between dots"),
    (
        "protocol.seeds=",
        "--set protocol.seeds=: no value after '=' (null sets a key to null, for keys that "
        "accept it: baseline.train.patience=null)",
    ),
    ("protocol.seeds=[1, 2", "--set protocol.seeds=[1, 2: cannot read the value: column"),
    ("protocol.seeds={a: 1", "cannot read the value: column"),
    ("baseline.train.loss=a: b", "a value is a YAML scalar or a flow list or mapping"),
    ("protocol.seeds=- 1", "a value is a YAML scalar or a flow list or mapping"),
    ("protocol.seeds=#1", "the value is empty once read as YAML ('#' starts a comment"),
    ("protocol.seeds=" + "9" * 200, "the limit is 100 (MAX_NUMBER_CHARS)"),
    (
        "protocol.seeds=[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        "32 levels",
    ),
    ("protocol.seeds=!!python/name:os.system 1", "could not determine a constructor"),
]


@pytest.mark.parametrize(("override", "expected"), MALFORMED)
def test_malformed_overrides_are_refused_before_the_file_is_read(
    tmp_path: Path, override: str, expected: str
) -> None:
    message = _problems(tmp_path / "absent.yaml", [override])
    assert expected in message, message
    assert "file not found" not in message  # the override is refused first, on its own
    assert "\n" not in message.split("\n  - ", 1)[1]  # one line per problem


def test_null_sets_a_key_to_null_where_the_key_accepts_it(
    write_grid: WriteGrid, minimal: str
) -> None:
    """What the empty-value message and the README promise: the example it gives works, and
    null is no way to remove a required key."""
    path = write_grid(minimal)
    assert load_grid(path, ["baseline.train.patience=null"]).baseline.train.patience is None
    message = _problems(path, ["baseline.train.lr=null"])
    assert "baseline.train.lr (--set baseline.train.lr=null): Input should be a valid number" in (
        message
    )


def test_an_alias_bomb_in_a_value_is_measured_not_expanded(tmp_path: Path) -> None:
    levels = ["&a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    levels += [f"&{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]" for i in range(7)]
    message = _problems(tmp_path / "absent.yaml", [f"protocol.seeds=[{', '.join(levels)}]"])
    assert "beyond a limit of a grid file" in message and "MAX_YAML_VALUES" in message


INVALID = [
    (
        ["baseline.train.epoch=2"],
        "baseline.train.epoch (--set baseline.train.epoch=2): unknown key 'epoch' (did you "
        "mean 'epochs'?); valid keys here: loss,",
    ),
    (["protocl.seeds=1"], "protocl (--set protocl.seeds=1): unknown key 'protocl' (did you mean"),
    (["train.epochs=2"], "'train' is not a top-level key of a grid (did you mean 'baseline."),
    (
        ["baseline.train.lr=fast"],
        "baseline.train.lr (--set baseline.train.lr=fast): Input should be a valid number",
    ),
    (["protocol.seeds=5000"], "protocol.seeds (--set protocol.seeds=5000): a count of seeds"),
    (["resources.gpu=.inf"], "resources.gpu (--set resources.gpu=.inf): Input should be a finite"),
    (
        ["protocol.seeds.max=3"],
        "--set protocol.seeds.max=3: protocol.seeds is 2 in the grid, not a mapping of keys; "
        "set it whole instead: --set protocol.seeds=...",
    ),
    (
        ["protocol.seeds=1", "protocol.seeds=3"],
        "--set protocol.seeds=3: protocol.seeds is also set by --set protocol.seeds=1",
    ),
    (
        ["protocol.val_fraction=0.95", "protocol.test_fraction=0.95"],
        "protocol (line 4, with --set protocol.val_fraction=0.95, --set protocol.test_fraction=",
    ),
    (
        ["ablations.swap.norm=[batch-double]"],
        "ablations.swap.norm[0] (--set ablations.swap.norm=[batch-double]): variant "
        "'norm=batch-double' is identical to the baseline",
    ),
    (["ablations.swap.lrr=[1]"], "unknown key 'lrr' (did you mean 'lr'?)"),
    (
        ["pruning.variants=[nope]"],
        "pruning.variants[0] (--set pruning.variants=[nope]): no variant named 'nope'",
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), INVALID)
def test_invalid_overrides_are_reported_like_the_file(
    write_grid: WriteGrid, minimal: str, overrides: list[str], expected: str
) -> None:
    message = _problems(write_grid(minimal), overrides)
    assert expected in message, message


def test_every_problem_is_reported_at_once(write_grid: WriteGrid, minimal: str) -> None:
    message = _problems(
        write_grid(minimal + "  optimizer: adamm\n"),
        ["baseline.train.epoch=2", "resources.cpu=0", "train.lr=1"],
    )
    assert "4 problem(s)" in message
    assert "--set baseline.train.epoch=2" in message and "--set resources.cpu=0" in message
    assert "--set train.lr=1" in message and re.search(r"optimizer \(line \d+\)", message)


def test_the_command_line_takes_repeated_set_options(
    write_grid: WriteGrid, minimal: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(write_grid(minimal))
    assert (
        main(["grid", "check", path, "--set", "protocol.seeds=3", "--set=ablations.remove=[norm]"])
        == 0
    )
    out = capsys.readouterr().out
    assert "2 variants x 3 seeds = 6 runs (seeds 0, 1, 2)" in out
    assert main(["grid", "show", path, "--set", "ablations.swap.lr=[1e-4]"]) == 0
    assert re.search(r"lr=0\.0001 +train\.lr: 0\.001 -> 0\.0001", capsys.readouterr().out)


def test_bad_overrides_on_the_command_line_exit_2_without_traceback(
    write_grid: WriteGrid, minimal: str
) -> None:
    path = str(write_grid(minimal))
    for command in (
        ["grid", "check", path, "--set", "baseline.train.epoch=2"],
        ["grid", "show", path, "--set", "baseline.train.epoch=2"],
        ["train", path, "--seed", "0", "--set", "baseline.train.epoch=2"],
        ["run", path, "--set", "baseline.train.epoch=2"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "ablate.cli", *command],
            capture_output=True,
            text=True,
            cwd=path.rsplit("/", 1)[0],
        )
        assert result.returncode == 2, result.stderr
        assert "--set baseline.train.epoch=2): unknown key 'epoch'" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (Path(path).parent / "runs").exists()  # nothing was written


def test_load_errors_are_user_errors() -> None:
    assert issubclass(GridError, UserError)
    with pytest.raises(UserError):
        load_grid(REPO / "grids" / "quickstart.yaml", ["nope"])
