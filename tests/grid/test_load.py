"""Loading grids: extends chains, environment variables, and every rejected input with the
YAML key path and line in its message."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ablate.errors import GridError
from ablate.grid import expand_variants, load_grid
from ablate.grid.load import deep_merge

WriteGrid = Callable[..., Path]
LineOf = Callable[[str, str], int]


def _problems(path: Path) -> str:
    with pytest.raises(GridError) as caught:
        load_grid(path)
    return str(caught.value)


def test_minimal_grid_loads(write_grid: WriteGrid, minimal: str) -> None:
    grid = load_grid(write_grid(minimal))
    assert grid.study == "tiny"
    assert grid.protocol.seed_list() == [0, 1]
    assert [v.name for v in expand_variants(grid)] == ["baseline"]


def test_deep_merge_merges_mappings_and_replaces_lists() -> None:
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    assert deep_merge(base, {"a": {"y": [3]}, "c": 2}) == {"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 1}  # the base is not modified


def test_extends_chain_merges_overrides(write_grid: WriteGrid, minimal: str) -> None:
    write_grid(minimal + "  augment:\n    copies: 2\n", name="base.yaml")
    write_grid(
        "extends: base.yaml\nstudy: middle\nbaseline:\n  train:\n    lr: 0.01\n"
        "ablations:\n  remove: [norm]\n",
        name="middle.yaml",
    )
    child = write_grid(
        "extends: middle.yaml\nstudy: child\nbaseline:\n  model:\n    widths: [4, 8]\n",
        name="child.yaml",
    )
    grid = load_grid(child)
    assert grid.study == "child"
    assert grid.baseline.model.widths == [4, 8]  # list replaced
    assert grid.baseline.train.lr == 0.01  # from the middle file
    assert grid.baseline.train.epochs == 1 and grid.baseline.augment.copies == 2  # from the base
    assert [v.name for v in expand_variants(grid)] == ["baseline", "no-norm"]


def test_inherited_problem_names_the_extended_file(
    write_grid: WriteGrid, minimal: str, line_of: LineOf
) -> None:
    base_text = minimal + "ablations:\n  remove: [dropout]\n"
    write_grid(base_text, name="base.yaml")
    child = write_grid("extends: base.yaml\nstudy: child\n", name="child.yaml")
    message = _problems(child)
    assert f"ablations.remove[0] (base.yaml line {line_of(base_text, 'dropout')})" in message
    assert "dropout" in message


def test_extends_cycle_is_rejected(write_grid: WriteGrid, minimal: str) -> None:
    write_grid("extends: b.yaml\n" + minimal, name="a.yaml")
    write_grid("extends: a.yaml\nstudy: b\n", name="b.yaml")
    message = _problems(Path(write_grid("extends: a.yaml\nstudy: c\n", name="c.yaml")))
    assert "extends cycle: c.yaml -> a.yaml -> b.yaml -> a.yaml" in message


def test_environment_variables_and_defaults(
    write_grid: WriteGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABLATE_TEST_ROOT", "/data/ebhi")
    monkeypatch.delenv("ABLATE_TEST_STUDY", raising=False)
    text = (
        "study: ${ABLATE_TEST_STUDY:-fallback}\ndata:\n  root: ${ABLATE_TEST_ROOT}/seg\n"
        "baseline: {}\n"
    )
    grid = load_grid(write_grid(text))
    assert grid.study == "fallback"
    assert grid.data.root == "/data/ebhi/seg"


def test_python_tags_are_not_executed(write_grid: WriteGrid, tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    text = f"study: !!python/object/apply:os.system ['touch {marker}']\n"
    message = _problems(write_grid(text))
    assert "line 1" in message and "constructor" in message
    assert not marker.exists()


def test_every_problem_is_reported_at_once(write_grid: WriteGrid, minimal: str) -> None:
    text = minimal.replace("epochs: 1", "epochs: 0\n    lr: -1") + "resorces: {cpu: 1}\n"
    message = _problems(write_grid(text))
    assert "3 problem(s)" in message
    for key in ("baseline.train.epochs", "baseline.train.lr", "resorces"):
        assert key in message


def test_ablation_problems_are_reported_with_schema_problems(
    write_grid: WriteGrid, minimal: str
) -> None:
    text = minimal + "resources: {cpu: 0}\nablations:\n  remove: [skip-9]\n"
    message = _problems(write_grid(text))
    assert "resources.cpu" in message and "ablations.remove[0]" in message


def test_ablation_problems_are_reported_beside_a_broken_baseline(
    write_grid: WriteGrid, minimal: str
) -> None:
    broken = minimal.replace("epochs: 1", "epochs: 1\n    lr: -1\n    optimizer: adamm")
    text = broken + "ablations:\n  remove: [bogus, skips]\n  swap: {optimizr: [sgd]}\n"
    message = _problems(write_grid(text))
    assert "4 problem(s)" in message
    for key in ("baseline.train.lr", "baseline.train.optimizer", "remove[0]", "swap.optimizr"):
        assert key in message
    assert "'skips'" not in message  # a valid removal stays valid beside the broken keys


def _append(extra: str) -> Callable[[str], str]:
    return lambda minimal: minimal + extra


def _replace(old: str, new: str) -> Callable[[str], str]:
    return lambda minimal: minimal.replace(old, new)


# Each rejected input of the issue: (id, minimal grid -> bad grid, key path, a fragment of the
# culprit's line, words the message must contain).
REJECTED = [
    ("unknown key", _append("    lrr: 0.1\n"), "baseline.train.lrr", "lrr:", ["did you mean 'lr'"]),
    (
        "wrong type",
        _append("    batch_size: many\n"),
        "baseline.train.batch_size",
        "batch_size:",
        ["valid integer", "'many'"],
    ),
    ("lr zero", _append("    lr: 0\n"), "baseline.train.lr", "lr:", ["greater than 0"]),
    ("lr negative", _append("    lr: -1.0e-3\n"), "baseline.train.lr", "lr:", ["greater than 0"]),
    (
        "test fraction 1",
        _replace("seeds: 2", "seeds: 2\n  test_fraction: 1.0"),
        "protocol.test_fraction",
        "test_fraction",
        ["less than 1"],
    ),
    (
        "test fraction 0",
        _replace("seeds: 2", "seeds: 2\n  test_fraction: 0"),
        "protocol.test_fraction",
        "test_fraction",
        ["greater than 0"],
    ),
    (
        "val fraction negative",
        _replace("seeds: 2", "seeds: 2\n  val_fraction: -0.1"),
        "protocol.val_fraction",
        "val_fraction",
        ["greater than or equal to 0"],
    ),
    (
        "test and val leave nothing",
        _replace("seeds: 2", "seeds: 2\n  test_fraction: 0.9\n  val_fraction: 0.95"),
        "protocol",
        "protocol:",
        ["leave almost nothing"],
    ),
    (
        "epochs zero",
        _replace("epochs: 1", "epochs: 0"),
        "baseline.train.epochs",
        "epochs:",
        ["greater than or equal to 1"],
    ),
    (
        "unknown component",
        _append("ablations:\n  remove: [skip-7]\n"),
        "ablations.remove[0]",
        "skip-7",
        ["unknown component 'skip-7'", "valid: skip-1, skip-2, skips, norm"],
    ),
    (
        "unknown swap value",
        _append("ablations:\n  swap:\n    norm: [batchnorm]\n"),
        "ablations.swap.norm[0]",
        "batchnorm",
        ["'batch-double'", "'instance'", "'batchnorm'"],
    ),
    (
        "unknown swap key",
        _append("ablations:\n  swap:\n    nrom: [none]\n"),
        "ablations.swap.nrom",
        "nrom",
        ["did you mean 'norm'", "valid: widths, norm"],
    ),
    (
        "empty seeds",
        _replace("seeds: 2", "seeds: []"),
        "protocol.seeds",
        "seeds:",
        ["must not be empty"],
    ),
    (
        "duplicate variant names",
        _append("ablations:\n  swap:\n    lr: [0.01, 1.0e-2]\n"),
        "ablations.swap.lr[1]",
        "lr:",
        ["duplicate variant name 'lr=0.01'"],
    ),
    (
        "named variant repeats a generated name",
        _append("ablations:\n  remove: [norm]\n  variants:\n    no-norm: {lr: 0.5}\n"),
        "ablations.variants.no-norm",
        "no-norm:",
        ["duplicate variant name 'no-norm'"],
    ),
    (
        "variant identical to baseline",
        _append("ablations:\n  swap:\n    lr: [1.0e-3]\n"),
        "ablations.swap.lr[0]",
        "lr:",
        ["identical to the baseline"],
    ),
    (
        "removal equal to baseline",
        _append("ablations:\n  remove: [dropout]\n"),
        "ablations.remove[0]",
        "dropout",
        ["would equal the baseline"],
    ),
    (
        "two variants with one recipe",
        _append("ablations:\n  remove: [norm]\n  swap:\n    norm: [none]\n"),
        "ablations.swap.norm[0]",
        "norm: [none]",
        ["identical to variant 'no-norm'"],
    ),
    (
        "unsafe variant name",
        _append("ablations:\n  variants:\n    my/variant: {lr: 0.5}\n"),
        "ablations.variants.my/variant",
        "my/variant",
        ["not safe as a file name"],
    ),
    (
        "double underscore in a variant name",
        _append("ablations:\n  variants:\n    fast__lr: {lr: 0.5}\n"),
        "ablations.variants.fast__lr",
        "fast__lr",
        ["not safe as a file name", "no '__'"],
    ),
    (
        "baseline used as a variant name",
        _append("ablations:\n  variants:\n    baseline: {lr: 0.5}\n"),
        "ablations.variants.baseline",
        "baseline: {lr",
        ["reserved"],
    ),
    (
        "repeated key",
        _replace("epochs: 1", "epochs: 1\n    epochs: 2"),
        "baseline.train.epochs",
        "epochs: 2",
        ["repeated"],
    ),
]


@pytest.mark.parametrize(
    ("edit", "key", "fragment", "words"),
    [case[1:] for case in REJECTED],
    ids=[case[0] for case in REJECTED],
)
def test_rejected_input_names_key_and_line(
    write_grid: WriteGrid,
    minimal: str,
    line_of: LineOf,
    edit: Callable[[str], str],
    key: str,
    fragment: str,
    words: list[str],
) -> None:
    text = edit(minimal)
    assert text != minimal
    message = _problems(write_grid(text))
    assert f"{key} (line {line_of(text, fragment)})" in message, message
    for word in words:
        assert word in message, message


def test_missing_baseline_is_rejected(write_grid: WriteGrid, minimal: str) -> None:
    text = minimal.split("baseline:")[0]
    assert "baseline: required, but missing" in _problems(write_grid(text))


def test_yaml_syntax_error_names_its_line(write_grid: WriteGrid, minimal: str) -> None:
    text = minimal.replace("    epochs: 1", "    epochs: [1\n    lr: 0.1")
    message = _problems(write_grid(text))
    assert "YAML syntax error" in message
    assert "line 11" in message  # the line where the unclosed list fails to parse


def test_unset_environment_variable_is_named(
    write_grid: WriteGrid, minimal: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ABLATE_TEST_UNSET", raising=False)
    text = minimal.replace("  synthetic: {per_class: 4, size: 32}", "  root: ${ABLATE_TEST_UNSET}")
    message = _problems(write_grid(text))
    assert "data.root (line 3): environment variable ABLATE_TEST_UNSET is not set" in message


SECRET = "hunter2-secret"


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (("epochs: 1", "epochs: ${SECRETV}"), "epochs (line 10): Input should be a valid integer"),
        (("epochs: 1", "epochs: 1\n    loss: x${SECRETV}y"), "loss the value of x${SECRETV}y is"),
        (
            ("  synthetic: {per_class: 4, size: 32}", "  root: ${SECRETV}" + "/a" * 3000),
            "data.root (line 3): is over 4096 bytes: the value of ${SECRETV}... (6014 characters)",
        ),
        (
            ("  synthetic: {per_class: 4, size: 32}", '  root: "/${SECRETV}' + "b" * 300 + '"'),
            "folder name over 255 bytes: the value of ${SECRETV}...",
        ),
        (("epochs: 1", "epochs: 1\nablations:\n  swap: {lr: ['${SECRETV}']}"), "got the value"),
    ],
    ids=["got", "validator", "cut-value", "cut-part", "swap"],
)
def test_environment_values_are_never_echoed(
    write_grid: WriteGrid,
    minimal: str,
    monkeypatch: pytest.MonkeyPatch,
    edit: tuple[str, str],
    says: str,
) -> None:
    """A value from ${VAR} is named by its variable: messages never show the environment,
    whole or cut, wherever the key's check quotes it."""
    monkeypatch.setenv("SECRETV", SECRET)
    message = _problems(write_grid(minimal.replace(*edit)))
    assert says in message
    assert SECRET not in message and SECRET[:8] not in message


def test_numbers_refuse_booleans_but_take_ints_and_booleans_stay_booleans(
    write_grid: WriteGrid, minimal: str
) -> None:
    text = (
        minimal.replace("seeds: 2", "seeds: 2\n  vary: {split: false}")
        .replace("widths: [8, 16, 32]", "widths: [8, 16, 32]\n    se: true")
        .replace("epochs: 1", "epochs: 1\n    lr: 1\n    momentum: 0")
    ) + "resources: {cpu: 2, gpu: 0}\n"
    grid = load_grid(write_grid(text))
    assert grid.baseline.train.lr == 1.0 and isinstance(grid.baseline.train.lr, float)
    assert grid.resources.cpu == 2.0 and grid.baseline.model.se is True
    assert grid.protocol.vary.split is False
    message = _problems(write_grid(minimal.replace("epochs: 1", "epochs: 1\n    momentum: yes")))
    assert "baseline.train.momentum (line 11): must be a number, got the boolean true" in message


def test_extends_stays_in_its_folder(write_grid: WriteGrid, minimal: str, tmp_path: Path) -> None:
    """A symlink (or '..') out of the grid's folder is refused unread; one inside is
    followed; a FIFO is not a file."""
    outside = tmp_path.parent / f"{tmp_path.name}-outside.yaml"
    outside.write_text("secret: content\n")
    (tmp_path / "out.yaml").symlink_to(os.path.relpath(outside, tmp_path))
    message = _problems(write_grid("extends: out.yaml\n" + minimal))
    assert "'out.yaml' leads out of this file's folder" in message
    assert "outside" not in message and "secret" not in message
    (tmp_path / "sub").mkdir()
    write_grid(minimal, name="sub/base.yaml")
    (tmp_path / "in.yaml").symlink_to("sub/base.yaml")
    assert load_grid(write_grid("extends: in.yaml\nstudy: child\n")).study == "child"
    os.mkfifo(tmp_path / "fifo.yaml")
    message = _problems(write_grid("extends: fifo.yaml\n" + minimal))
    assert "extends (line 1): 'fifo.yaml' is not a file" in message


def test_missing_extends_file_is_named(write_grid: WriteGrid, minimal: str) -> None:
    message = _problems(write_grid("extends: nope.yaml\n" + minimal))
    assert "extends (line 1)" in message and "'nope.yaml' not found" in message


@pytest.mark.parametrize("text", ["", "\n# only a comment\n"], ids=["empty", "comment only"])
def test_empty_file_is_rejected(write_grid: WriteGrid, text: str) -> None:
    message = _problems(write_grid(text))
    assert "grid.yaml" in message and "empty" in message


def test_missing_file_is_rejected(tmp_path: Path) -> None:
    message = _problems(tmp_path / "absent.yaml")
    assert "absent.yaml" in message and "not found" in message


def test_top_level_list_is_rejected(write_grid: WriteGrid) -> None:
    assert "top level must be a mapping" in _problems(write_grid("- study\n- data\n"))


def test_single_run_config_loads_as_a_one_variant_grid(tmp_path: Path) -> None:
    path = tmp_path / "my run.yaml"
    path.write_text(
        "data: {synthetic: {per_class: 4}}\nmodel: {widths: [8, 16]}\ntrain: {epochs: 2, lr: -1}\n"
    )
    with pytest.raises(GridError) as error:
        load_grid(path)
    # Problems name the keys as written, not the baseline section they moved to.
    assert "train.lr (line 3)" in str(error.value) and "baseline." not in str(error.value)
    path.write_text("data: {synthetic: {per_class: 4}}\nmodel: {widths: [8, 16]}\n")
    grid = load_grid(path)
    assert grid.study == "my-run"
    assert grid.baseline.model.widths == [8, 16]
    assert [variant.name for variant in expand_variants(grid)] == ["baseline"]


def test_image_size_must_survive_every_variants_halvings(
    write_grid: WriteGrid, minimal: str
) -> None:
    """[8, 16, 32] halves twice: 34 px is refused for the baseline, 40 px for a deeper variant."""
    odd = minimal.replace("epochs: 1", "epochs: 1\n    image_size: 34")
    message = _problems(write_grid(odd))
    assert "baseline.train.image_size (line 11)" in message and "not a multiple of 4" in message
    assert "use e.g. 32" in message
    deeper = minimal.replace("epochs: 1", "epochs: 1\n    image_size: 40")
    deeper += "ablations:\n  swap: {widths: [[8, 16, 32, 64, 128]]}\n"
    message = _problems(write_grid(deeper))
    assert "ablations.swap.widths[0]" in message and "not a multiple of 16" in message
    assert "baseline.train.image_size" not in message


def test_a_broken_baseline_size_is_reported_once(write_grid: WriteGrid, minimal: str) -> None:
    """The repaired baseline (defaults for bad keys) is not checked again: no second problem
    about a default size the user never wrote."""
    deep = minimal.replace("widths: [8, 16, 32]", "widths: [8, 16, 32, 64, 128, 256, 512, 1024]")
    text = deep.replace("epochs: 1", "epochs: 1\n    image_size: abc")
    message = _problems(write_grid(text + "ablations:\n  remove: [bogus]\n"))
    assert "2 problem(s)" in message, message
    assert "image_size" in message and "not a multiple" not in message
